"""Reasoning across providers: extended thinking for Claude (Anthropic's API and Bedrock), how a
canonical request asks for it and how its blocks travel, and what OpenAI's reasoning models take.

OpenAI clients ask with `reasoning_effort`; Anthropic-format clients (and LiteLLM-style
OpenAI clients) with `thinking: {"type": "enabled", "budget_tokens": N}`, which wins when
both are given. The answer's reasoning comes back the way OpenAI-compatible gateways
return it: the text as `message.reasoning_content` (`delta.reasoning_content` in streams)
and the blocks themselves, with Anthropic's signatures, as `message.thinking_blocks`.
A client that sends `thinking_blocks` back on its assistant message keeps a tool loop
with thinking working: Claude refuses a tool result whose turn lost its signed thinking.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchboard.errors import InvalidRequest

if TYPE_CHECKING:
    from switchboard.config import Deployment

#: Thinking budget per `reasoning_effort` ("none" and "minimal" think not at all).
EFFORT_BUDGETS = {"low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192}
#: Claude's `output_config.effort` levels (the canonical `effort`); "max" is beyond OpenAI's "xhigh".
CLAUDE_EFFORTS = ("low", "medium", "high", "xhigh", "max")
MIN_BUDGET = 1024  # Anthropic's floor for budget_tokens


def thinking_for(body: dict[str, Any], max_tokens: int, max_given: bool) -> tuple[dict[str, Any] | None, int]:
    """(Anthropic `thinking` or None, the max_tokens to send with it) for a canonical request.

    The budget counts inside max_tokens (as reasoning counts inside OpenAI's
    max_completion_tokens). A budget from `reasoning_effort` shrinks to fit a client's
    max_tokens, and thinking is left off when fewer than 1,024 tokens would be left for
    it; with no max_tokens from the client the default leaves the answer room too.
    """
    explicit = body.get("thinking")
    if isinstance(explicit, dict):
        if explicit.get("type") == "disabled":
            return None, max_tokens
        if explicit.get("type") == "adaptive":  # Claude decides how much to think, within max_tokens
            return explicit, max_tokens
        budget = explicit.get("budget_tokens")
        if not max_given and isinstance(budget, int) and not isinstance(budget, bool):
            max_tokens = max(max_tokens, 2 * budget)  # the gateway's default must leave the answer room too
        return explicit, max_tokens
    budget = EFFORT_BUDGETS.get(body.get("reasoning_effort"))  # type: ignore[arg-type]
    if budget is None:
        return None, max_tokens
    if not max_given:
        max_tokens = max(max_tokens, 2 * budget)
    budget = min(budget, max_tokens - 1)
    if budget < MIN_BUDGET:
        return None, max_tokens
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def drop_sampling(params: dict[str, Any], temperature: str, top_p: str, top_k: str | None = None) -> None:
    """Remove what Claude refuses while thinking: temperature and top_k, and top_p below 0.95 (keys by wire format)."""
    params.pop(temperature, None)
    if top_k is not None:
        params.pop(top_k, None)
    if params.get(top_p, 1.0) < 0.95:
        params.pop(top_p)


def anthropic_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The signed thinking blocks of a canonical assistant message, as Anthropic content blocks."""
    out = []
    for block in message.get("thinking_blocks") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "thinking" and isinstance(block.get("thinking"), str) and block.get("signature"):
            out.append({"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]})
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            out.append({"type": "redacted_thinking", "data": block["data"]})
    return out


def canonical_block(block: dict[str, Any]) -> dict[str, Any] | None:
    """An Anthropic thinking / redacted_thinking block as a `thinking_blocks` entry (None for others)."""
    if block.get("type") == "thinking":
        return {"type": "thinking", "thinking": block.get("thinking") or "", "signature": block.get("signature") or ""}
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    return None


# OpenAI's reasoning models: o1, o3, o4-mini..., gpt-5 and later (not the gpt-5*-chat models). They take
# max_completion_tokens and reasoning_effort, and refuse max_tokens and the sampling parameters.
_OPENAI_REASONING = re.compile(r"^(o[1-9][0-9]*(-[\w.-]+)?|gpt-([5-9]|[1-9][0-9])(\.[0-9]+)?(-(?!chat)[\w.-]+)?)$")
# OpenAI chat models that refuse reasoning_effort.
_OPENAI_PLAIN = re.compile(r"^(gpt-4|gpt-3\.5|chatgpt-|gpt-([5-9]|[1-9][0-9])(\.[0-9]+)?-chat)")
#: Sampling parameters OpenAI's reasoning models refuse, unless the effort is "none" (gpt-5.1 and later).
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "logit_bias")


def openai_reasoning_deployment(deployment: Deployment) -> bool | None:
    """The deployment's `reasoning:` setting, else what its upstream model's name says (`openai_reasoning`)."""
    setting = deployment.options.get("reasoning")
    return openai_reasoning(deployment.upstream_model) if setting is None else setting


@functools.lru_cache(maxsize=1024)
def openai_reasoning(upstream_model: str) -> bool | None:
    """True for an OpenAI reasoning model, False for an OpenAI chat model that refuses `reasoning_effort`,
    None when the name says neither (another vendor's model, or a deployment name: set `reasoning:`)."""
    if _OPENAI_REASONING.match(upstream_model):
        return True
    return False if _OPENAI_PLAIN.match(upstream_model) else None


def effort_for(body: dict[str, Any], steps: Mapping[str, int], above: str, disabled: str | None = None) -> str | None:
    """Anthropic's `thinking` and `effort` as a `reasoning_effort`: a budget becomes the first of `steps` (effort ->
    the largest budget it covers) it fits, else `above`; `disabled` for {"type": "disabled"}; adaptive thinking,
    or none, Claude's effort ("max" as "xhigh"); None when they say nothing."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") == "adaptive":
        effort = body.get("effort")
        return "xhigh" if effort == "max" else effort if isinstance(effort, str) else None
    if thinking.get("type") == "disabled":
        return disabled
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return None
    return next((effort for effort, top in steps.items() if budget <= top), above)


# Claude's budget per effort, inverted; o-series models cannot stop reasoning, so "disabled" leaves their default.
_OPENAI_STEPS = {"low": EFFORT_BUDGETS["low"], "medium": EFFORT_BUDGETS["medium"]}


def for_openai_reasoning(body: dict[str, Any]) -> None:
    """Shape a chat-completions body for an OpenAI reasoning model, in place: max_tokens becomes
    max_completion_tokens, Anthropic's `thinking` a `reasoning_effort`, and the sampling parameters these
    models refuse are left out (the answer cannot honour them; OpenRouter drops them the same way).
    Log-probabilities, which they never return, are a 400 as on Claude (a cascade's `logprob` check
    could not work)."""
    if body.get("logprobs") or body.get("top_logprobs"):
        raise InvalidRequest("'logprobs' is not supported by OpenAI reasoning models", param="logprobs",
                             code="unsupported_parameter")
    body.pop("logprobs", None)
    body.pop("top_logprobs", None)
    limit = body.pop("max_tokens", None)
    if limit is not None and body.get("max_completion_tokens") is None:
        body["max_completion_tokens"] = limit
    effort = effort_for(body, _OPENAI_STEPS, "high")
    body.pop("thinking", None)
    body.pop("effort", None)
    if effort is not None and body.get("reasoning_effort") is None:
        body["reasoning_effort"] = effort
    if body.get("reasoning_effort") != "none":
        for key in SAMPLING:
            body.pop(key, None)
