"""Cascade routing: ask the weak model first, check its answer, escalate when the check fails.

Checks: `json` (the answer parses as JSON, and has the schema's required keys
when the request gave a JSON schema; an answer that only calls tools must call
offered tools with JSON object arguments), `regex` (the answer matches a pattern),
`judge` (a judge model answers YES to a rubric; a judge that is down fails the check), `logprob` (the mean token
log-probability of the weak answer is at least `min_logprob`; an answer without
log-probabilities fails the check, so the cascade errs towards quality), `verifier`
(a learned answer verifier, ``VerifierRouter``, scores prompt and answer below the
escalation threshold).
Every call made is accounted: the weak answer, the judge's verdict and the
strong answer all add to the request's tokens and cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.accounting.media_tokens import media_of
from switchboard.accounting.tokens import estimate_tokens, reported_or_counted, usage_of
from switchboard.config import Deployment, ModelConfig
from switchboard.context import RequestContext
from switchboard.core.request import ChatRequest
from switchboard.errors import GatewayError
from switchboard.routing.auto import AutoRouter, CascadeSettings, clip_for_scoring, last_user_text

if TYPE_CHECKING:
    from switchboard.app import Gateway
    from switchboard.routing.smart.router import VerifierRouter


@dataclass
class CascadeOutcome:
    response: dict[str, Any]
    model: ModelConfig
    deployment: Deployment
    escalated: bool
    detail: str
    extra_prompt_tokens: int = 0
    extra_completion_tokens: int = 0
    extra_cost: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    verifier_score: float | None = None


def _message(response: dict[str, Any]) -> dict[str, Any]:
    choices = response.get("choices") or []
    msg = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    return msg if isinstance(msg, dict) else {}


def _tool_calls(response: dict[str, Any]) -> list[dict[str, Any]]:
    calls = _message(response).get("tool_calls")
    return [c.get("function") or {} for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def answer_text(response: dict[str, Any]) -> str:
    """The answer as the checks read it: its text, then each tool call as ``name(arguments)`` on a line."""
    text = _message(response).get("content") or ""
    calls = [f"{fn.get('name', '')}({fn.get('arguments') or ''})" for fn in _tool_calls(response)]
    return "\n".join([text, *calls] if text else calls)


async def _cost(response: dict[str, Any], model: ModelConfig, dep: Deployment, request: ChatRequest,
                extra: dict[str, Any]) -> tuple[int, int, float]:
    """A call's (prompt tokens, completion tokens, cost): the upstream's usage, else a local count."""
    usage = await reported_or_counted(usage_of(response), dep.upstream_model, request.prompt_text(),
                                      answer_text(response), extra, media_of(request, dep))
    return usage.prompt, usage.completion, (dep.pricing or model.pricing).cost(*usage)


def check_json(response: dict[str, Any], request: ChatRequest) -> tuple[bool, str]:
    """The `json` check: of the calls of an answer that only calls tools, else of its text."""
    if _tool_calls(response) and not _message(response).get("content"):
        return check_tool_calls(response, request)
    return check_json_text(answer_text(response), request)


def check_tool_calls(response: dict[str, Any], request: ChatRequest) -> tuple[bool, str]:
    """Each call names an offered tool, with JSON object arguments."""
    offered = {(t.get("function") or {}).get("name") for t in request.body.get("tools") or () if isinstance(t, dict)}
    for fn in _tool_calls(response):
        if fn.get("name") not in offered:
            return False, f"answer calls {fn.get('name')!r}, which is not an offered tool"
        try:
            arguments = orjson.loads(fn.get("arguments") or "")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            return False, f"answer calls {fn.get('name')!r} with arguments that are not a JSON object"
    return True, "answer calls offered tools with JSON arguments"


def check_json_text(text: str, request: ChatRequest) -> tuple[bool, str]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False, "answer is not valid JSON"
    fmt = request.body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    if isinstance(schema, dict):
        required = schema.get("required")
        # a malformed `required` (not a list of names) asks for nothing checkable: only the JSON counts
        keys = [k for k in required if isinstance(k, str)] if isinstance(required, list) else []
        if not isinstance(value, dict) or any(k not in value for k in keys):
            return False, "answer lacks keys the schema requires"
    return True, "answer is valid JSON"


def check_logprob(response: dict[str, Any], min_logprob: float) -> tuple[bool, str]:
    choices = response.get("choices") or []
    content = ((choices[0].get("logprobs") or {}).get("content") if choices else None) or []
    values = [t.get("logprob") for t in content if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))]
    if not values:
        return False, "no log-probabilities returned"
    mean = sum(values) / len(values)
    return mean >= min_logprob, f"mean logprob {mean:.3f} vs {min_logprob:g}"


def check_verifier(verifier: VerifierRouter, request: ChatRequest, text: str,
                   threshold: float) -> tuple[bool, str, float]:
    """(passed, detail, score): the learned verifier's escalation score for this answer."""
    score = verifier.score_answer(clip_for_scoring(request.prompt_text()), clip_for_scoring(text))
    return score < threshold, f"verifier score {score:.3f} vs {threshold:.3f}", score


async def run_cascade(gw: Gateway, router: AutoRouter, request: ChatRequest, ctx: RequestContext) -> CascadeOutcome:
    settings: CascadeSettings = router.settings.cascade  # type: ignore[assignment]
    weak = router.model(router.settings.weak)
    weak_request = request
    if settings.check == "logprob" and not request.body.get("logprobs"):
        weak_request = ChatRequest({**request.body, "logprobs": True})
    try:
        response, weak_model, weak_dep = await gw.executor.run(weak, ctx, lambda p, d: p.chat(weak_request, d))
    except GatewayError as exc:
        if exc.status < 500 and exc.status != 429:  # the request itself is at fault: the strong model would refuse it
            raise
        # the weak model is down: a failed check like any other, the strong model answers
        return await _escalate(gw, router, request, ctx, f"weak model failed: {exc.message[:200]}",
                               [{"model": weak.name, "role": "weak", "error": exc.code or exc.type}])
    weak_p, weak_c, weak_cost = await _cost(response, weak_model, weak_dep, weak_request, ctx.entry.extra)
    calls: list[dict[str, Any]] = [{"model": weak_model.name, "role": "weak", "cost": weak_cost}]
    judged = (0, 0, 0.0)
    try:
        text = answer_text(response)
        verifier_score = None
        if settings.check == "verifier":
            # decide() set the request's threshold: a cascade runs only on a score decision.
            assert router.verifier is not None and ctx.route is not None and ctx.route.escalate_at is not None
            passed, detail, verifier_score = check_verifier(router.verifier, request, text, ctx.route.escalate_at)
        elif settings.check == "json":
            passed, detail = check_json(response, request)
        elif settings.check == "regex":
            passed = re.search(settings.pattern or "", text) is not None
            detail = "answer matches the pattern" if passed else "answer does not match the pattern"
        elif settings.check == "logprob":
            passed, detail = check_logprob(response, settings.min_logprob)
        else:
            passed, detail, judged = await _judge(gw, router, request, ctx, text, calls)
        if passed:
            if weak_request is not request:  # the check asked for log-probabilities; the client did not
                for choice in response.get("choices") or ():
                    choice["logprobs"] = None
            return CascadeOutcome(response, weak_model, weak_dep, False, detail, *judged, calls, verifier_score)
        outcome = await _escalate(gw, router, request, ctx, detail, calls, verifier_score)
    except BaseException:
        # The calls made so far were served (and billed upstream): the log keeps them, and a client that hung
        # up is charged for them. A failed request is not charged (docs/accounts.md).
        ctx.entry.prompt_tokens, ctx.entry.completion_tokens = weak_p + judged[0], weak_c + judged[1]
        ctx.entry.cost = weak_cost + judged[2]
        ctx.entry.extra["cascade"] = {"failed": True, "calls": calls}
        raise
    outcome.extra_prompt_tokens, outcome.extra_completion_tokens = judged[0] + weak_p, judged[1] + weak_c
    outcome.extra_cost = judged[2] + weak_cost
    return outcome


async def _judge(gw: Gateway, router: AutoRouter, request: ChatRequest, ctx: RequestContext, text: str,
                 calls: list[dict[str, Any]]) -> tuple[bool, str, tuple[int, int, float]]:
    """(passed, detail, the verdict's tokens and cost). A judge that is down fails the check, as a weak model
    that is down does: the strong model answers."""
    settings: CascadeSettings = router.settings.cascade  # type: ignore[assignment]
    judge = router.model(settings.judge_model or "")
    verdict_request = ChatRequest({"model": judge.name, "max_tokens": 5, "temperature": 0, "messages": [
        {"role": "system", "content": "You grade answers. Reply with exactly YES or NO."},
        {"role": "user", "content": f"Question:\n{last_user_text(request)}\n\nAnswer:\n{text}\n\n"
                                    f"{settings.rubric}\nReply YES or NO."}]})
    await gw.admission.admit_next(ctx, judge, estimate_tokens(verdict_request.prompt_text()), 5)
    try:
        verdict, judge_model, judge_dep = await gw.executor.run(judge, ctx, lambda p, d: p.chat(verdict_request, d))
    except GatewayError as exc:
        if exc.status < 500 and exc.status != 429:
            raise
        calls.append({"model": judge.name, "role": "judge", "error": exc.code or exc.type})
        return False, f"judge failed: {exc.message[:200]}", (0, 0, 0.0)
    judged = await _cost(verdict, judge_model, judge_dep, verdict_request, ctx.entry.extra)
    calls.append({"model": judge_model.name, "role": "judge", "cost": judged[2]})
    said = answer_text(verdict).strip()
    return _YES.match(said) is not None, f"judge {judge_model.name} said {said[:20]!r}", judged


_YES = re.compile(r"[\W_]*yes\b", re.IGNORECASE)  # the word, whatever markup comes first ("**Yes.**", "'YES'")


async def _escalate(gw: Gateway, router: AutoRouter, request: ChatRequest, ctx: RequestContext, detail: str,
                    calls: list[dict[str, Any]], verifier_score: float | None = None) -> CascadeOutcome:
    """The strong model's answer, admitted against its own limits first."""
    strong = router.model(router.settings.strong)
    await gw.admission.admit_next(ctx, strong, estimate_tokens(request.prompt_text()), request.max_output_tokens)
    final, strong_model, strong_dep = await gw.executor.run(strong, ctx, lambda pr, d: pr.chat(request, d))
    calls.append({"model": strong_model.name, "role": "strong"})
    return CascadeOutcome(final, strong_model, strong_dep, True, detail, calls=calls, verifier_score=verifier_score)


def completion_to_chunks(response: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """Replay a whole completion as stream chunks (a cascade decides before it can stream)."""
    base = {"id": response.get("id", "chatcmpl-cascade"), "object": "chat.completion.chunk",
            "created": response.get("created", 0), "model": response.get("model", "")}
    chunks: list[dict[str, Any]] = []
    for choice in response.get("choices") or []:
        msg = choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": msg.get("content")}
        for key in ("refusal", "reasoning_content", "thinking_blocks"):  # as a stream's deltas carry them
            if msg.get(key):
                delta[key] = msg[key]
        if msg.get("tool_calls"):
            delta["tool_calls"] = [{**tc, "index": i} for i, tc in enumerate(msg["tool_calls"])]
        chunks.append({**base, "choices": [{"index": choice.get("index", 0), "delta": delta,
                                            "logprobs": choice.get("logprobs"), "finish_reason": None}]})
        finish = {"index": choice.get("index", 0), "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}
        if choice.get("stop_sequence") is not None:  # as a stream's finish carries it (Claude, or a local stop)
            finish["stop_sequence"] = choice["stop_sequence"]
        chunks.append({**base, "choices": [finish]})
    if include_usage and response.get("usage"):
        chunks.append({**base, "choices": [], "usage": response["usage"]})
    return chunks
