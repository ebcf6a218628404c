"""Planning attempts: which models may serve a request, in which order, and why.

A request starts on its model. When every usable deployment of it has
failed (or its breakers are all open) it moves to the model's `fallbacks`,
in order. Two kinds of failure switch to a dedicated chain instead: a prompt
too long for the context window goes to `context_window_fallbacks` (a
longer-context model), and a content-policy refusal goes to
`content_policy_fallbacks`. Which deployment of a model takes each attempt is
the balancer's choice, made at the moment of the attempt (routing/balancing.py),
so that health and load learned during this very request count.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from switchboard.config import Deployment, GatewayConfig, ModelConfig

GENERAL = "fallback"
CONTEXT = "context_window"
POLICY = "content_policy"


def weighted_order(deployments: list[Deployment], rng: random.Random) -> list[Deployment]:
    """Deployments in a random order where heavier ones tend to come first."""
    if len(deployments) == 1:
        return deployments
    # Efraimidis-Spirakis weighted sampling without replacement.
    keyed = [(rng.random() ** (1.0 / d.weight) if d.weight > 0 else 0.0, d) for d in deployments]
    keyed.sort(key=lambda kd: kd[0], reverse=True)
    return [d for _, d in keyed]


class AttemptPlanner:
    def __init__(self, config: GatewayConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()

    def chain(self, model: ModelConfig, reason: str = GENERAL) -> list[ModelConfig]:
        """The fallback models for `reason`, in order (configured names only, the model itself excluded)."""
        names = {GENERAL: model.fallbacks, CONTEXT: model.context_fallbacks, POLICY: model.policy_fallbacks}[reason]
        out: list[ModelConfig] = []
        for name in names:
            target = self.config.models.get(name)
            if target is not None and target.name != model.name and all(t.name != name for t in out):
                out.append(target)
        return out

    def order(self, model: ModelConfig) -> list[Deployment]:
        if model.strategy == "ordered":
            return list(model.deployments)
        return weighted_order(model.deployments, self.rng)

    def plan(self, model: ModelConfig, chain: list[str] | None = None) -> Iterator[tuple[ModelConfig, Deployment]]:
        """A static view of the plan: (model, deployment) pairs, the model's own first, then each fallback's.

        The executor does not walk this (it asks the balancer at each attempt);
        it is kept for tools that want to show or replay what could be tried.
        """
        seen = {model.name}
        for dep in self.order(model):
            yield model, dep
        for name in model.fallbacks if chain is None else chain:
            fallback = self.config.models.get(name)
            if fallback is None or name in seen:
                continue
            seen.add(name)
            for dep in self.order(fallback):
                yield fallback, dep
