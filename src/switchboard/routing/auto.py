"""Serving smart routers: a model name such as `auto` that picks a real model per request.

The decision, in order:

1. capability rules: a request the weak model cannot take (images, tools, or a
   prompt longer than its context) goes to a model that meets all its needs;
2. semantic-intent routes (example utterances matched by similarity) whose model
   can take the request;
3. the learned router's score against a threshold (fixed, calibrated to a target
   share of strong calls, or to a quality target: the share of the weak-to-strong
   quality gap to recover), overridable per request with the
   ``x-switchboard-threshold``, ``x-switchboard-strong-share`` or
   ``x-switchboard-quality-target`` header.

In cascade mode the weak model is asked first and its answer checked
(routing/cascade.py); the strong model is called only when the check fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from switchboard.accounting.tokens import estimate_tokens
from switchboard.config import ConfigError, GatewayConfig, ModelConfig, _Section
from switchboard.core.request import ChatRequest, messages_text
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
    escalate_share: float | None = None  # ... or the share of weak answers to escalate ...
    quality_target: float | None = None  # ... or the share of the quality gap to recover


@dataclass
class RouterConfig:
    name: str
    strong: str
    weak: str
    router: str = "default"
    threshold: float | None = None
    strong_share: float | None = None
    quality_target: float | None = None
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
    fallback: str | None = None  # serves when every deployment of `model` (and its own fallbacks) failed


def parse_routers(config: GatewayConfig) -> dict[str, RouterConfig]:
    """Read the `routers:` section, with line-numbered errors."""
    raw = config.raw.get("routers")
    if raw is None:
        return {}
    from switchboard.yamlsource import Located

    doc = config.doc or Located(config.raw, {}, config.source)
    if not isinstance(raw, dict):
        raise ConfigError(str(doc.error(("routers",), "must be a mapping from router name to its settings")))
    return {name: _parse_router(_Section(doc, ("routers", name), value, os.environ), name, config)
            for name, value in raw.items()}


def _parse_router(sec: _Section, name: str, config: GatewayConfig) -> RouterConfig:
    if name in config.models:
        raise sec.error(None, f"router name {name!r} is also a model name")
    rc = RouterConfig(
        name=name,
        strong=sec.str("strong", required=True) or "",
        weak=sec.str("weak", required=True) or "",
        router=sec.str("router", "default") or "default",
        threshold=sec.number("threshold", None, minimum=0, maximum=1),
        strong_share=sec.number("strong_share", None, minimum=0, maximum=1),
        quality_target=sec.number("quality_target", None, minimum=0, maximum=1),
        vision_model=sec.str("vision_model"),
        tools_model=sec.str("tools_model"),
        long_context_model=sec.str("long_context_model"),
        calibration_prompts=sec.str("calibration_prompts"),
    )
    _one_trade_off(sec, ("threshold", "strong_share", "quality_target"))
    for key in ("strong", "weak", "vision_model", "tools_model", "long_context_model"):
        target = getattr(rc, key)
        if target is not None:
            _require_chat_model(sec, key, target, config)
    rc.routes = _parse_routes(sec, config)
    cs = sec.section("cascade")
    if cs is not None:
        rc.cascade = _parse_cascade(cs, config, rc.weak)
    sec.done()
    return rc


def _require_chat_model(sec: _Section, key: str, name: str, config: GatewayConfig) -> None:
    """`name`, given at `key`, must be a configured model that answers chat requests."""
    model = config.models.get(name)
    if model is None:
        raise sec.error(key, f"{name!r} is not a configured model")
    if model.embeddings_only:
        raise sec.error(key, f"{name!r} is an embedding model; a router sends chat requests here")


def _parse_routes(sec: _Section, config: GatewayConfig) -> list[IntentRoute]:
    routes = sec.raw("routes")
    if routes is None:
        return []
    from switchboard.routing.intents import DEFAULT_THRESHOLD, IntentRoute

    if not isinstance(routes, list):
        raise sec.error("routes", "must be a list of {name, model, examples, threshold}")
    out: list[IntentRoute] = []
    for i, r in enumerate(routes):
        rs = _Section(sec.doc, sec.path + ("routes", i), r, sec.env)
        route = IntentRoute(name=rs.str("name", f"route{i}") or "", model=rs.str("model", required=True) or "",
                            examples=rs.str_list("examples"),
                            threshold=rs.number("threshold", DEFAULT_THRESHOLD, minimum=0, maximum=1))
        _require_chat_model(rs, "model", route.model, config)
        if not route.examples:
            raise rs.error("examples", "needs at least one example utterance")
        # the log's reason `intent:NAME` must say which route decided
        same = next((j for j, other in enumerate(out) if other.name == route.name), None)
        if same is not None:
            raise rs.error("name", f"duplicate route name {route.name!r} (routes[{same}] has it too)")
        rs.done()
        out.append(route)
    return out


# Keys that only one check reads: given with another check they would be silently ignored.
_CHECK_KEYS = {"pattern": "regex", "judge_model": "judge", "rubric": "judge", "min_logprob": "logprob",
               "verifier": "verifier", "threshold": "verifier", "escalate_share": "verifier",
               "quality_target": "verifier"}


def _parse_cascade(cs: _Section, config: GatewayConfig, weak: str) -> CascadeSettings:
    cascade = CascadeSettings(
        check=cs.str("check", "json", choices=("json", "regex", "judge", "logprob", "verifier")) or "json",
        pattern=cs.str("pattern"),
        judge_model=cs.str("judge_model"),
        rubric=cs.str("rubric", CascadeSettings.rubric) or CascadeSettings.rubric,
        min_logprob=cs.number("min_logprob", -0.5, maximum=0),
        verifier=cs.str("verifier"),
        threshold=cs.number("threshold", None, minimum=0, maximum=1),
        escalate_share=cs.number("escalate_share", None, minimum=0, maximum=1),
        quality_target=cs.number("quality_target", None, minimum=0, maximum=1),
    )
    for key, check in _CHECK_KEYS.items():
        if check != cascade.check and cs.raw(key) is not None:
            raise cs.error(key, f"applies only when check is {check!r} (check is {cascade.check!r})")
    _one_trade_off(cs, ("threshold", "escalate_share", "quality_target"))
    if cascade.check == "verifier" and not cascade.verifier:
        raise cs.error("verifier", "is required when check is 'verifier': a file from "
                                   "`switchboard router train --kind verifier`")
    if cascade.check == "regex":
        _check_pattern(cs, cascade.pattern)
    if cascade.check == "judge":
        if not cascade.judge_model:
            raise cs.error("judge_model", "is required when check is 'judge'")
        _require_chat_model(cs, "judge_model", cascade.judge_model, config)
    blind = _without_logprobs(config.models[weak]) if cascade.check == "logprob" else None
    if blind is not None:
        raise cs.error("check", f"'logprob' needs log-probabilities, which the weak model {weak!r} cannot "
                                f"return from {blind}; choose json, regex, judge or verifier")
    cs.done()
    return cascade


def _check_pattern(sec: _Section, pattern: str | None) -> None:
    """A regex check's pattern must be given and compile: a bad one would fail every cascaded request."""
    if not pattern:
        raise sec.error("pattern", "is required when check is 'regex'")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise sec.error("pattern", f"not a regular expression ({exc})") from None


def _without_logprobs(model: ModelConfig) -> str | None:
    """The first deployment of `model` that returns no log-probabilities, described; None if all do."""
    from switchboard.providers.reasoning import openai_reasoning_deployment

    for dep in model.deployments:
        if dep.provider not in ("openai", "azure", "gemini", "replay"):
            return f"deployment {dep.id} (provider {dep.provider})"
        if dep.provider in ("openai", "azure") and openai_reasoning_deployment(dep):
            return f"deployment {dep.id} (an OpenAI reasoning model)"
    return None


def _one_trade_off(sec: _Section, keys: tuple[str, ...]) -> None:
    given = [k for k in keys if sec.raw(k) is not None]
    if len(given) > 1:
        raise sec.error(given[1], f"give only one of {', '.join(keys)} (got {' and '.join(given)})")


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


def share_for_quality(scorer: ScoringRouter, target: float) -> float:
    """The strong share that ``scorer``'s stored quality curve needs for ``target``, or a
    400 when the router file predates quality curves."""
    try:
        return scorer.share_for_quality(target)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="x-switchboard-quality-target") from None


def request_threshold(scorer: ScoringRouter, configured: float, headers: dict[str, str],
                      for_share: Callable[[float], float]) -> float:
    """The threshold for one request: ``x-switchboard-threshold``, else ``for_share`` of
    ``x-switchboard-strong-share`` or of the share ``x-switchboard-quality-target`` needs, else ``configured``."""
    fixed = _header_fraction(headers, "x-switchboard-threshold")
    share = _header_fraction(headers, "x-switchboard-strong-share")
    quality = _header_fraction(headers, "x-switchboard-quality-target")
    if fixed is not None:
        return fixed
    if share is None and quality is not None:
        share = share_for_quality(scorer, quality)
    return configured if share is None else for_share(share)


def _configured_threshold(scorer: ScoringRouter, threshold: float | None, share: float | None,
                          quality: float | None, for_share: Callable[[float], float]) -> float:
    """A router's configured threshold: the fixed one, else ``for_share`` of the strong share
    given or needed for the quality target, else the file's default (config allows one of them)."""
    if threshold is not None:
        return threshold
    if share is None and quality is not None:
        share = scorer.share_for_quality(quality)
    return scorer.default_threshold if share is None else for_share(share)


class AutoRouter:
    """One configured router: decides which model serves a request."""

    def __init__(self, settings: RouterConfig, config: GatewayConfig) -> None:
        self.settings = settings
        self.config = config
        self.scorer: ScoringRouter | None = None
        self.threshold = 0.5
        self.verifier: VerifierRouter | None = None
        self.verifier_threshold = 0.5
        self.calibration_scores: list[float] | None = None  # of `calibration_prompts`, scored once at load

    def load(self) -> None:
        """Load the scoring model and fix the threshold (blocking: call off the event loop)."""
        from switchboard.routing.smart import load_router
        from switchboard.routing.smart.router import RandomRouter, RouterFormatError, VerifierRouter

        s = self.settings
        try:  # a bad router file, or one without the quality curve a target needs
            self.scorer = RandomRouter() if s.router == "random" else load_router(
                None if s.router == "default" else s.router)
            if isinstance(self.scorer, VerifierRouter):  # it scores answers: every prompt decision would fail
                raise RouterFormatError(f"{s.router} holds an answer verifier, not a prompt router; name it as "
                                        "cascade.verifier (with check: verifier)")
            if s.cascade is not None and s.cascade.check == "verifier":
                self._load_verifier(s.cascade)
            prompts = load_prompts(s.calibration_prompts) if s.calibration_prompts else None
            if prompts is not None and not prompts:
                raise ValueError(f"calibration_prompts: {s.calibration_prompts} holds no prompts")
            if prompts:
                self.calibration_scores = list(self.scorer.score_many([clip_for_scoring(p) for p in prompts]))
            self.threshold = _configured_threshold(self.scorer, s.threshold, s.strong_share, s.quality_target,
                                                   self.threshold_for_share)
        except (ValueError, OSError) as exc:  # RouterFormatError is a ValueError; a missing file an OSError
            raise ConfigError(f"routers.{s.name}: {exc}") from None
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
        self.verifier_threshold = _configured_threshold(verifier, cascade.threshold, cascade.escalate_share,
                                                        cascade.quality_target, verifier.threshold_for_share)

    def threshold_for_share(self, share: float) -> float:
        """The threshold that sends `share` of the calibration prompts strong, else of the training prompts."""
        assert self.scorer is not None
        if self.calibration_scores:
            from switchboard.routing.smart.calibrate import threshold_for_scores

            return threshold_for_scores(self.calibration_scores, share)
        return self.scorer.threshold_for_share(share)

    def model(self, name: str) -> ModelConfig:
        return self.config.models[name]

    def decide(self, request: ChatRequest, headers: dict[str, str]) -> Decision:
        assert self.scorer is not None, "load() first"
        s = self.settings
        # the trade-off headers first, so a bad value is a 400 whichever rule decides
        threshold = request_threshold(self.scorer, self.threshold, headers, self.threshold_for_share)
        escalate_at = None
        if self.verifier is not None:
            escalate_at = request_threshold(self.verifier, self.verifier_threshold, headers,
                                            self.verifier.threshold_for_share)
        weak = self.model(s.weak)
        text = request.prompt_text()
        needs = _needs(request)
        tokens = estimate_tokens(text) + (request.max_output_tokens or 0)
        unmet = _unmet(weak, needs, tokens)
        if unmet:
            return Decision(self._capable(unmet, needs, tokens), unmet[0], strong=True)
        found = None
        if s.routes:
            from switchboard.routing.intents import match

            found = match([r for r in s.routes if not _unmet(self.model(r.model), needs, tokens)],
                          last_user_text(request))
        if found is not None:
            route, sim = found
            return Decision(route.model, f"intent:{route.name}", score=sim, strong=route.model == s.strong,
                            fallback=None if route.model == s.strong else s.strong)
        score = self.scorer.score(clip_for_scoring(text))
        if s.cascade is not None:
            # A cascade asks the weak model first whatever the score (its check, not the score, escalates), so the
            # request is admitted for the weak call; it escalates by itself, so needs no fallback.
            return Decision(s.weak, "score", score=score, strong=False, escalate_at=escalate_at)
        if score >= threshold:
            return Decision(s.strong, "score", score=score, strong=True, escalate_at=escalate_at)
        return Decision(s.weak, "score", score=score, strong=False, escalate_at=escalate_at, fallback=s.strong)

    def _capable(self, unmet: list[str], needs: frozenset[str], tokens: int) -> str:
        """The model for a request the weak model cannot take: the first that meets every need of the request
        (its capabilities and its length), trying the models configured for the unmet rules, then the strong
        model, then the other configured models in order; if none does, the first of those tried."""
        s = self.settings
        chosen = {"vision": s.vision_model, "tools": s.tools_model, "long_context": s.long_context_model}
        tried = [name for rule in unmet if (name := chosen[rule])] + [s.strong]
        others = [name for name, model in self.config.models.items()
                  if name not in tried and name != s.weak and not model.embeddings_only]
        for name in tried + others:
            if not _unmet(self.model(name), needs, tokens):
                return name
        return tried[0]


def _needs(request: ChatRequest) -> frozenset[str]:
    """The capabilities a request needs: vision for images and files (a PDF's pages are read as images), tools
    for tools offered or a conversation that already holds tool calls or results."""
    needs = set()
    if request.has_visual_input():
        needs.add("vision")
    if request.body.get("tools") or any(
            isinstance(m, dict) and (m.get("role") in ("tool", "function") or m.get("tool_calls"))
            for m in request.body["messages"]):
        needs.add("tools")
    return frozenset(needs)


def _unmet(model: ModelConfig, needs: frozenset[str], tokens: int) -> list[str]:
    """The capability rules `model` fails for a request, in the order they are named."""
    unmet = [need for need in ("vision", "tools") if need in needs and need not in model.capabilities]
    if model.context_window and tokens > model.context_window:
        unmet.append("long_context")
    return unmet


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
    from switchboard.textlines import NotUtf8, numbered_lines

    try:
        lines = [(number, line.strip()) for number, line in numbered_lines(path)]
    except NotUtf8 as exc:
        raise ValueError(f"calibration_prompts: {exc}") from None
    return [_calibration_prompt(line, path, number) for number, line in lines if line]


def _calibration_prompt(line: str, path: str, number: int) -> str:
    """The prompt of one line: the line itself, or a JSON object's `prompt` or `messages`."""
    import orjson

    if not line.startswith("{"):
        return line
    try:
        item: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ValueError(f"calibration_prompts: {path}:{number}: not valid JSON") from None
    if isinstance(item.get("prompt"), str):
        return item["prompt"]
    if isinstance(item.get("messages"), list):  # e.g. the file record mode writes
        return messages_text(item["messages"])
    raise ValueError(f"calibration_prompts: {path}:{number}: needs a string 'prompt' or 'messages'")
