"""Wildcard models: one config entry such as `openai/*` serves every model of a provider by name.

A client asks for `openai/gpt-4.1-nano`; the gateway finds the longest wildcard prefix that
matches (`openai/`), puts the rest (`gpt-4.1-nano`) where each deployment's `model` has its
`*` (just `*` by default), and builds the model as if it had been written out in the config:
same parsing, same catalog look-up for prices, capabilities and context window. A model the
catalog does not price is refused unless the wildcard gives a `pricing` (for a local vLLM or
Ollama, say `{input_per_mtok: 0, output_per_mtok: 0}`), so no request goes unbilled by
accident. Made models are kept, at most `MAX_MODELS` of them, so a client cannot grow the
gateway's state without bound.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from switchboard.config import ModelConfig, Reliability, Timeouts, _model, _Section
from switchboard.errors import InvalidRequest
from switchboard.yamlsource import Located

MAX_MODELS = 1000
# What may follow the prefix: a provider's model id (letters, digits, and . _ : @ / + -).
_REST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}")  # whole name: fullmatch, `$` would allow a "\n"
_PROBE = "model"


@dataclass(frozen=True)
class WildcardModel:
    """A `models:` entry whose name ends in `/*`, as written (checked once at load time)."""

    pattern: str
    value: dict[str, Any]
    doc: Located
    env: Mapping[str, str]
    timeouts: Timeouts
    reliability: Reliability

    @property
    def prefix(self) -> str:
        return self.pattern[:-1]

    @property
    def priced(self) -> bool:
        return "pricing" in self.value

    def build(self, name: str) -> ModelConfig:
        """The model `name` (prefix + rest) as if written out: each deployment's `*` replaced by the rest."""
        rest = name[len(self.prefix):]
        value = dict(self.value)
        deployments = value.get("deployments")
        if isinstance(deployments, list):  # anything else: the parser's own error
            value["deployments"] = [
                {**{k: v for k, v in d.items() if k != "id"},  # ids: <name>#<i>, one set per model
                 "model": str(d.get("model", "*")).replace("*", rest)} if isinstance(d, dict) else d
                for d in deployments]
        return _model(_Section(self.doc, ("models", self.pattern), value, self.env), name, self.timeouts,
                      self.reliability)


def parse_wildcard(sec: _Section, pattern: str, timeouts: Timeouts, reliability: Reliability) -> WildcardModel:
    """Check a wildcard entry: a non-empty prefix, a `*` in each deployment's `model`, and every other setting
    as for a written-out model (by building one)."""
    if not pattern.endswith("/*") or len(pattern) < 3 or "*" in pattern[:-1]:
        raise sec.error("", "a wildcard model is a prefix ending in /*, such as openai/*")
    deployments = sec.raw("deployments")
    for i, dep in enumerate(deployments if isinstance(deployments, list) else ()):
        model = dep.get("model", "*") if isinstance(dep, dict) else "*"
        if not isinstance(model, str) or model.count("*") != 1:
            raise _Section(sec.doc, sec.path + ("deployments", i), dep, sec.env).error(
                "model", "in a wildcard model must hold one * (the requested name after the prefix), e.g. us.*")
    wildcard = WildcardModel(pattern, sec.value, sec.doc, sec.env, timeouts, reliability)
    wildcard.build(wildcard.prefix + _PROBE)
    return wildcard


class WildcardModels:
    """The config's wildcards and the models made from them for this process."""

    def __init__(self, wildcards: Mapping[str, WildcardModel], on_new: Callable[[ModelConfig], None]) -> None:
        self.wildcards = list(wildcards.values())
        self.made: dict[str, ModelConfig] = {}
        self.on_new = on_new

    def patterns(self) -> list[str]:
        return [w.pattern for w in self.wildcards]

    def matches(self, name: str) -> WildcardModel | None:
        return matching(self.wildcards, name)

    def peek(self, name: str) -> ModelConfig | None:
        """The model `name` would be (None when no wildcard covers it or it has no price), without making it:
        for look-ups that serve nothing (retrieve a model, count tokens), which must not use up `MAX_MODELS`."""
        model = self.made.get(name)
        if model is not None:
            return model
        built = self._build(name)
        return built[1] if built is not None and billable(*built) else None

    def resolve(self, name: str) -> ModelConfig | None:
        """The model a wildcard makes of `name`, or None when none matches; a 400 when it has no price."""
        model = self.made.get(name)
        if model is not None:
            return model
        built = self._build(name)
        if built is None:
            return None
        if len(self.made) >= MAX_MODELS:
            raise InvalidRequest(f"This gateway already serves {MAX_MODELS} models through wildcards; list "
                                 f"{name!r} under models: in the config.", param="model")
        if not billable(*built):
            raise InvalidRequest(f"The model {name!r} has no known price: give {built[0].pattern} a pricing in the "
                                 f"config, or list the model with its own.", param="model",
                                 code="model_not_priced")
        model = self.made[name] = built[1]
        self.on_new(model)
        return model

    def _build(self, name: str) -> tuple[WildcardModel, ModelConfig] | None:
        wildcard = self.matches(name)
        return None if wildcard is None else (wildcard, wildcard.build(name))


def matching(wildcards: Iterable[WildcardModel], name: str) -> WildcardModel | None:
    """The wildcard with the longest prefix that covers `name`, or None."""
    best: WildcardModel | None = None
    for wildcard in wildcards:
        if (name.startswith(wildcard.prefix) and _REST.fullmatch(name[len(wildcard.prefix):])
                and (best is None or len(wildcard.prefix) > len(best.prefix))):
            best = wildcard
    return best


def billable(wildcard: WildcardModel, model: ModelConfig) -> bool:
    """Whether a made model has a price: the wildcard's own, or the catalog's for its upstream model or name."""
    from switchboard.catalog import lookup

    return wildcard.priced or lookup(model.deployments[0].upstream_model) is not None or lookup(model.name) is not None


def model_references(raw: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    """Every place the config names a model outside `models:` itself, as (path, name): fallbacks, routers,
    per-model limits, recording and shadow traffic. Values of the wrong type are skipped (their sections
    report them)."""
    out: list[tuple[tuple, str]] = []

    def add(path: tuple, value: Any) -> None:
        if isinstance(value, str):
            out.append((path, value))
        elif isinstance(value, list):
            out.extend((path, v) for v in value if isinstance(v, str))

    def sub(value: Any) -> dict:
        return value if isinstance(value, dict) else {}

    for name, model in sub(raw.get("models")).items():
        for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            add(("models", name, key), sub(model).get(key))
    for name, router in sub(raw.get("routers")).items():
        router = sub(router)
        for key in ("strong", "weak", "vision_model", "tools_model", "long_context_model"):
            add(("routers", name, key), router.get(key))
        for i, route in enumerate(router.get("routes") if isinstance(router.get("routes"), list) else ()):
            add(("routers", name, "routes", i, "model"), sub(route).get("model"))
        add(("routers", name, "cascade", "judge_model"), sub(router.get("cascade")).get("judge_model"))
    for name in sub(sub(raw.get("accounts")).get("model_limits")):
        add(("accounts", "model_limits"), name)
    add(("record", "models"), sub(raw.get("record")).get("models"))
    for name, rule in sub(sub(raw.get("shadow")).get("models")).items():
        add(("shadow", "models"), name)
        add(("shadow", "models", name, "candidates"), sub(rule).get("candidates"))
    return out


def allowed(name: str, allowed_models: frozenset[str]) -> bool:
    """Whether a key's model list lets it use `name`: the name itself, or a wildcard pattern that covers it."""
    if name in allowed_models:
        return True
    return any(p.endswith("/*") and name.startswith(p[:-1]) for p in allowed_models)
