"""Extended thinking for Claude (Anthropic's API and Bedrock): how a canonical request asks for it,
and how its blocks travel.

OpenAI clients ask with `reasoning_effort`; Anthropic-format clients (and LiteLLM-style
OpenAI clients) with `thinking: {"type": "enabled", "budget_tokens": N}`, which wins when
both are given. The answer's reasoning comes back the way OpenAI-compatible gateways
return it: the text as `message.reasoning_content` (`delta.reasoning_content` in streams)
and the blocks themselves, with Anthropic's signatures, as `message.thinking_blocks`.
A client that sends `thinking_blocks` back on its assistant message keeps a tool loop
with thinking working: Claude refuses a tool result whose turn lost its signed thinking.
"""

from __future__ import annotations

from typing import Any

#: Thinking budget per `reasoning_effort` ("none" and "minimal" think not at all).
EFFORT_BUDGETS = {"low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192}
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
        return (None if explicit.get("type") == "disabled" else explicit), max_tokens
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
