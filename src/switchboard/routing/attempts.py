"""Planning attempts: which deployments to try, in which order.

The plan is the model's deployments in the order its balancing strategy
prefers, then, model by model, the deployments of its fallbacks. The executor
walks it, moving on only after a retryable failure.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from switchboard.config import Deployment, GatewayConfig, ModelConfig


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

    def order(self, model: ModelConfig) -> list[Deployment]:
        if model.strategy == "ordered":
            return list(model.deployments)
        return weighted_order(model.deployments, self.rng)

    def plan(self, model: ModelConfig, chain: list[str] | None = None) -> Iterator[tuple[ModelConfig, Deployment]]:
        """Yield (model, deployment) pairs: the model's own first, then each fallback model's."""
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
