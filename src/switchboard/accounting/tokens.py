"""Token usage: what the upstream reported, or an estimate when it reported none."""

from __future__ import annotations

from typing import Any


def estimate_tokens(text: str) -> int:
    """A fast estimate (about four characters a token for English text), used only when no usage is reported."""
    return (len(text) + 3) // 4 if text else 0


def usage_of(data: dict[str, Any] | None) -> tuple[int, int, int] | None:
    """(prompt, completion, cached prompt) tokens from an OpenAI-shaped `usage`, or None."""
    usage = data.get("usage") if data else None
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    if not all(isinstance(v, int) for v in (prompt, completion, cached)):
        return None
    return prompt, completion, cached
