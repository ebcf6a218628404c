"""Serving smart routers: a model name such as `auto` that picks a real model per request.

The decision, in order:

1. capability rules: images go to a vision model, tools to a tool-capable
   model, a prompt longer than the weak model's context to a long-context one;
2. semantic-intent routes (example utterances matched by similarity);
3. the learned router's score against a threshold (fixed, or calibrated to a
   target share of strong calls), overridable per request with the
   ``x-switchboard-threshold`` or ``x-switchboard-strong-share`` header.

In cascade mode the weak model is asked first and its answer checked
(routing/cascade.py); the strong model is called only when the check fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from switchboard.accounting.tokens import estimate_tokens
from switchboard.config import ConfigError, GatewayConfig, ModelConfig, _Section
from switchboard.core.request import ChatRequest
from switchboard.errors import InvalidRequest

if TYPE_CHECKING:
    from switchboard.routing.intents import IntentRoute
    from switchboard.routing.smart.router import ScoringRouter, VerifierRouter

# Scoring a huge prompt whole would stall the event loop; its head and tail carry the signal.
_SCORE_CHARS = 8000


@dataclass
class CascadeSettings:
    check: str = "json"  # json | regex | judge | logprob | verifier
    pattern: str | None = None
    judge_model: str | None = None
    rubric: str = "Is the answer correct, complete and responsive to the question?"
    min_logprob: float = -0.5
    verifier: str | None = None  # file from `switchboard router train --kind verifier`
    threshold: float | None = None  # verifier score at or above which the answer is escalated ...
    escalate_share: float | None = None  # ... or the share of weak answers to escalate


@dataclass
class RouterConfig:
    name: str
    strong: str
    weak: str
    router: str = "default"
    threshold: float | None = None
    strong_share: float | None = None
    vision_model: str | None = None
    tools_model: str | None = None
    long_context_model: str | None = None
    routes: list[IntentRoute] = field(default_factory=list)
    cascade: CascadeSettings | None = None
    calibration_prompts: str | None = None


@dataclass(slots=True)
class Decision:
    model: str
    reason: str
    score: float | None = None
    strong: bool = False
    escalate_at: float | None = None  # cascade verifier threshold for this request


def parse_routers(config: GatewayConfig) -> dict[str, RouterConfig]:
    """Read the `routers:` section, with line-numbered errors."""
    raw = config.raw.get("routers")
    if raw is None:
        return {}
    from switchboard.yamlsource import Located

    doc = config.doc or Located(config.raw, {}, config.source)
    import os

    if not isinstance(raw, dict):
        raise ConfigError(str(doc.error(("routers",), "must be a mapping from router name to its settings")))
    out: dict[str, RouterConfig] = {}
    for name, value in raw.items():
        sec = _Section(doc, ("routers", name), value, os.environ)
        if name in config.models:
            raise sec.error(None, f"router name {name!r} is also a model name")
        rc = RouterConfig(
            name=name,
            strong=sec.str("strong", required=True) or "",
            weak=sec.str("weak", required=True) or "",
            router=sec.str("router", "default") or "default",
            threshold=sec.number("threshold", None, minimum=0, maximum=1),
            strong_share=sec.number("strong_share", None, minimum=0, maximum=1),
            vision_model=sec.str("vision_model"),
            tools_model=sec.str("tools_model"),
            long_context_model=sec.str("long_context_model"),
            calibration_prompts=sec.str("calibration_prompts"),
        )
        for key in ("strong", "weak", "vision_model", "tools_model", "long_context_model"):
            target = getattr(rc, key)
            if target is not None and target not in config.models:
                raise sec.error(key, f"{target!r} is not a configured model")
        routes = sec.raw("routes")
        if routes is not None:
            from switchboard.routing.intents import IntentRoute

            if not isinstance(routes, list):
                raise sec.error("routes", "must be a list of {name, model, examples, threshold}")
            for i, r in enumerate(routes):
                rs = _Section(doc, ("routers", name, "routes", i), r, os.environ)
                route = IntentRoute(name=rs.str("name", f"route{i}") or "", model=rs.str("model", required=True) or "",
                                    examples=rs.str_list("examples"),
                                    threshold=rs.number("threshold", 0.55, minimum=0, maximum=1))
                if route.model not in config.models:
                    raise rs.error("model", f"{route.model!r} is not a configured model")
                if not route.examples:
                    raise rs.error("examples", "needs at least one example utterance")
                rs.done()
                rc.routes.append(route)
        cs = sec.section("cascade")
        if cs is not None:
            rc.cascade = CascadeSettings(
                check=cs.str("check", "json", choices=("json", "regex", "judge", "logprob", "verifier")) or "json",
                pattern=cs.str("pattern"),
                judge_model=cs.str("judge_model"),
                rubric=cs.str("rubric", CascadeSettings.rubric) or CascadeSettings.rubric,
                min_logprob=cs.number("min_logprob", -0.5, maximum=0),
                verifier=cs.str("verifier"),
                threshold=cs.number("threshold", None, minimum=0, maximum=1),
                escalate_share=cs.number("escalate_share", None, minimum=0, maximum=1),
            )
            if rc.cascade.check == "verifier" and not rc.cascade.verifier:
                raise cs.error("verifier", "is required when check is 'verifier': a file from "
                                           "`switchboard router train --kind verifier`")
            if rc.cascade.check == "regex" and not rc.cascade.pattern:
                raise cs.error("pattern", "is required when check is 'regex'")
            if rc.cascade.check == "judge":
                if not rc.cascade.judge_model or rc.cascade.judge_model not in config.models:
                    raise cs.error("judge_model", "must name a configured model when check is 'judge'")
            cs.done()
        sec.done()
        out[name] = rc
    return out


def _header_fraction(headers: dict[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise InvalidRequest(f"Header {name} must be a number between 0 and 1, got {value!r}.", param=name)
    return number


class AutoRouter:
    """One configured router: decides which model serves a request."""

    def __init__(self, settings: RouterConfig, config: GatewayConfig) -> None:
        self.settings = settings
        self.config = config
        self.scorer: ScoringRouter | None = None
        self.threshold = 0.5
        self.verifier: VerifierRouter | None = None
        self.verifier_threshold = 0.5

    def load(self) -> None:
        """Load the scoring model and fix the threshold (blocking: call off the event loop)."""
        from switchboard.routing.smart import load_router
        from switchboard.routing.smart.router import RandomRouter, RouterFormatError

        s = self.settings
        try:
            if s.router == "random":
                self.scorer = RandomRouter()
            else:
                self.scorer = load_router(None if s.router == "default" else s.router)
            if s.cascade is not None and s.cascade.check == "verifier":
                self._load_verifier(s.cascade)
        except RouterFormatError as exc:
            raise ConfigError(f"routers.{s.name}: {exc}") from None
        if s.threshold is not None:
            self.threshold = s.threshold
        elif s.strong_share is not None:
            self.threshold = self.threshold_for_share(s.strong_share)
        else:
            self.threshold = self.scorer.default_threshold
        for route in s.routes:
            route.prepare()

    def _load_verifier(self, cascade: CascadeSettings) -> None:
        from switchboard.routing.smart import load_router
        from switchboard.routing.smart.router import RouterFormatError, VerifierRouter

        verifier = load_router(cascade.verifier)
        if not isinstance(verifier, VerifierRouter):
            raise RouterFormatError(f"{cascade.verifier} holds a prompt router ({verifier.name!r}), not an answer "
                                    "verifier; train one with `switchboard router train --kind verifier`")
        self.verifier = verifier
        if cascade.threshold is not None:
            self.verifier_threshold = cascade.threshold
        elif cascade.escalate_share is not None:
            self.verifier_threshold = verifier.threshold_for_share(cascade.escalate_share)
        else:
            self.verifier_threshold = verifier.default_threshold

    def verifier_threshold_for(self, headers: dict[str, str]) -> float:
        """The escalation threshold, after the per-request override headers."""
        assert self.verifier is not None
        threshold = self.verifier_threshold
        share = _header_fraction(headers, "x-switchboard-strong-share")
        if share is not None:
            threshold = self.verifier.threshold_for_share(share)
        override = _header_fraction(headers, "x-switchboard-threshold")
        return override if override is not None else threshold

    def threshold_for_share(self, share: float) -> float:
        assert self.scorer is not None
        prompts = load_prompts(self.settings.calibration_prompts) if self.settings.calibration_prompts else None
        if prompts:
            from switchboard.routing.smart import calibrate_threshold

            return calibrate_threshold(self.scorer, prompts, share)
        return self.scorer.threshold_for_share(share)

    def model(self, name: str) -> ModelConfig:
        return self.config.models[name]

    def decide(self, request: ChatRequest, headers: dict[str, str]) -> Decision:
        s = self.settings
        weak, strong = self.model(s.weak), self.model(s.strong)
        if request.has_images() and "vision" not in weak.capabilities:
            return Decision(s.vision_model or self._capable("vision", strong), "vision", strong=True)
        if request.body.get("tools") and "tools" not in weak.capabilities:
            return Decision(s.tools_model or self._capable("tools", strong), "tools", strong=True)
        text = request.prompt_text()
        if weak.context_window and estimate_tokens(text) > weak.context_window:
            return Decision(s.long_context_model or self._longest(strong), "long_context", strong=True)
        last_user = last_user_text(request)
        found = None
        if s.routes:
            from switchboard.routing.intents import match

            found = match(s.routes, last_user)
        if found is not None:
            route, sim = found
            return Decision(route.model, f"intent:{route.name}", score=sim, strong=route.model == s.strong)
        text = clip_for_scoring(text)
        threshold = self.threshold
        share = _header_fraction(headers, "x-switchboard-strong-share")
        if share is not None:
            threshold = self.scorer.threshold_for_share(share) if self.scorer else threshold
        override = _header_fraction(headers, "x-switchboard-threshold")
        if override is not None:
            threshold = override
        score = self.scorer.score(text) if self.scorer else 1.0
        escalate_at = self.verifier_threshold_for(headers) if self.verifier is not None else None
        if score >= threshold:
            return Decision(s.strong, "score", score=score, strong=True, escalate_at=escalate_at)
        return Decision(s.weak, "score", score=score, strong=False, escalate_at=escalate_at)

    def _capable(self, capability: str, preferred: ModelConfig) -> str:
        if capability in preferred.capabilities:
            return preferred.name
        for model in self.config.models.values():
            if capability in model.capabilities:
                return model.name
        return preferred.name

    def _longest(self, preferred: ModelConfig) -> str:
        best = max(self.config.models.values(), key=lambda m: m.context_window or 0)
        if preferred.context_window and best.context_window and preferred.context_window >= best.context_window:
            return preferred.name
        return best.name


def clip_for_scoring(text: str) -> str:
    """Head and tail of a text longer than a scorer should read on the event loop."""
    if len(text) <= _SCORE_CHARS:
        return text
    return text[: _SCORE_CHARS // 2] + "\n" + text[-_SCORE_CHARS // 2:]


def last_user_text(request: ChatRequest) -> str:
    for msg in reversed(request.body["messages"]):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def load_prompts(path: str) -> list[str]:
    """Prompts for calibration: a text file (one per line) or JSONL with `prompt` or `messages`."""
    import orjson

    prompts: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                item: Any = orjson.loads(line)
                if "prompt" in item:
                    prompts.append(str(item["prompt"]))
                elif "messages" in item:
                    prompts.append("\n".join(str(m.get("content", "")) for m in item["messages"]))
            else:
                prompts.append(line)
    return prompts
