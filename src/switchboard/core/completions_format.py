"""OpenAI's legacy Completions API (`POST /v1/completions`) in terms of chat completions.

The prompt becomes the one user message of a chat request, so every configured model serves it (and routers,
fallbacks and accounting apply as to chat); the answer's text comes back as a `text_completion`. What has no
chat counterpart is refused with a 400 naming it: `echo`, `suffix`, `best_of` other than `n`, several prompts in one
request and prompts of token ids. As in OpenAI's API, `max_tokens` defaults to 16 and `logprobs` asks for that
many most likely alternatives per token (0 to 5).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from switchboard.errors import InvalidRequest

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this API
MAX_LOGPROBS = 5
_LEGACY_ONLY = ("prompt", "suffix", "echo", "best_of", "logprobs")


def _unsupported(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_parameter")


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str) for p in prompt):
        raise _unsupported("prompt", "Send one prompt per request: batches of prompts are not supported.")
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) or isinstance(p, list) for p in prompt):
        raise _unsupported("prompt", "Prompts of token ids are not supported: send the prompt as a string.")
    raise InvalidRequest("'prompt' must be a string.", param="prompt", code="invalid_value")


def to_chat(body: Any) -> dict[str, Any]:
    """The chat request that serves a Completions request; other fields pass through as they do on chat."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    prompt = _prompt(body)
    if body.get("echo"):
        raise _unsupported("echo", "'echo' is not supported: the prompt is not repeated in the answer.")
    if body.get("suffix"):
        raise _unsupported("suffix", "'suffix' (insertion) is not supported.")
    best_of = body.get("best_of")
    if best_of is not None and best_of != (body.get("n") or 1):
        raise _unsupported("best_of", "'best_of' is not supported: send n for several completions.")
    chat = {k: v for k, v in body.items() if k not in _LEGACY_ONLY}
    chat["messages"] = [{"role": "user", "content": prompt}]
    if chat.get("max_tokens") is None:
        chat["max_tokens"] = DEFAULT_MAX_TOKENS
    logprobs = body.get("logprobs")
    if logprobs is not None:
        if isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= MAX_LOGPROBS:
            raise InvalidRequest(f"'logprobs' must be an integer between 0 and {MAX_LOGPROBS}, got {logprobs!r}.",
                                 param="logprobs", code="invalid_value")
        chat["logprobs"] = True
        if logprobs:
            chat["top_logprobs"] = logprobs
    return chat


def _id(chat_id: str) -> str:
    return "cmpl-" + chat_id.removeprefix("chatcmpl-")


class _Offsets:
    """Where each choice's next token starts in its text: legacy logprobs carry `text_offset`."""

    def __init__(self) -> None:
        self.at: dict[int, int] = {}

    def legacy(self, index: int, logprobs: Any) -> dict[str, Any] | None:
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not isinstance(content, list):
            return None
        tokens, token_logprobs, top, offsets = [], [], [], []
        at = self.at.get(index, 0)
        for item in content:
            if not isinstance(item, dict):
                continue
            token = str(item.get("token", ""))
            tokens.append(token)
            token_logprobs.append(item.get("logprob"))
            top.append({alt.get("token", ""): alt.get("logprob") for alt in item.get("top_logprobs") or ()})
            offsets.append(at)
            at += len(token)
        self.at[index] = at
        return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def to_completion(response: dict[str, Any]) -> dict[str, Any]:
    """A chat completion as a `text_completion`."""
    offsets = _Offsets()
    out: dict[str, Any] = {
        "id": _id(str(response.get("id", ""))), "object": "text_completion", "created": response.get("created"),
        "model": response.get("model"),
        "choices": [{"text": _text(c.get("message")), "index": c.get("index", i),
                     "logprobs": offsets.legacy(c.get("index", i), c.get("logprobs")),
                     "finish_reason": c.get("finish_reason")}
                    for i, c in enumerate(response.get("choices") or ())],
    }
    if response.get("system_fingerprint"):
        out["system_fingerprint"] = response["system_fingerprint"]
    if response.get("usage") is not None:
        out["usage"] = response["usage"]
    return out


async def to_chunks(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Chat completion chunks as `text_completion` chunks: a chunk that carries no text, no finish and no usage
    (the role announcement) is left out."""
    offsets = _Offsets()
    try:
        async for chunk in _legacy_chunks(chunks, offsets):
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # the pipeline settles the request when it closes


async def _legacy_chunks(chunks: AsyncIterator[dict[str, Any]], offsets: _Offsets) -> AsyncIterator[dict[str, Any]]:
    async for chunk in chunks:
        choices = []
        for i, c in enumerate(chunk.get("choices") or ()):
            delta = c.get("delta") or {}
            text = delta.get("content") if isinstance(delta.get("content"), str) else ""
            if not text and c.get("finish_reason") is None:
                continue
            index = c.get("index", i)
            choices.append({"text": text, "index": index, "logprobs": offsets.legacy(index, c.get("logprobs")),
                            "finish_reason": c.get("finish_reason")})
        if not choices and chunk.get("usage") is None:
            continue
        out: dict[str, Any] = {"id": _id(str(chunk.get("id", ""))), "object": "text_completion",
                               "created": chunk.get("created"), "model": chunk.get("model"), "choices": choices}
        if chunk.get("usage") is not None:
            out["usage"] = chunk["usage"]
        yield out
