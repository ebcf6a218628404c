"""Token usage: what the upstream reported, or an estimate when it reported none."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple


class Usage(NamedTuple):
    """Tokens of one call. `cached` and `cache_write` are the parts of `prompt` read from and written to
    the provider's prompt cache, `cache_write_1h` the part of the writes kept for an hour (each priced apart:
    see `Pricing.cost`, which takes them in this order)."""

    prompt: int
    completion: int
    cached: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0


def estimate_tokens(text: str) -> int:
    """A fast estimate (about four characters a token for English text), used only when no usage is reported."""
    return (len(text) + 3) // 4 if text else 0


def usage_of(data: dict[str, Any] | None) -> Usage | None:
    """The tokens of an OpenAI-shaped `usage` (cache reads and writes from `prompt_tokens_details`), or None."""
    usage = data.get("usage") if data else None
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = details.get("cached_tokens") or 0
    cache_write = details.get("cache_write_tokens") or 0
    hour = details.get("cache_write_1h_tokens") or 0
    if not all(isinstance(v, int) for v in (prompt, completion, cached, cache_write, hour)):
        return None
    return Usage(prompt, completion, cached, cache_write, hour)


# ---------------------------------------------------------------- local counting

_FALLBACK_ENCODING = "o200k_base"


@lru_cache(maxsize=1024)
def _encoding_name(model: str) -> str:
    from bpe_openai import encoding_name_for_model

    try:
        return encoding_name_for_model(model.rsplit("/", 1)[-1])
    except (KeyError, ValueError):
        return _FALLBACK_ENCODING


@lru_cache(maxsize=8)
def _encoding(name: str) -> Any:
    from bpe_openai import (
        get_encoding,  # heavy: imported on the first count, on a worker thread
    )

    return get_encoding(name)


def count_tokens(text: str, model: str) -> tuple[int, bool]:
    """(tokens, exact): a real BPE count when a tokenizer is installed, else the estimate.

    OpenAI models use their own encoding; every other model is counted with
    o200k_base, which is within a few percent of most modern tokenizers (their
    own vocabularies do not ship offline). Without `bpe-openai` installed
    (the `tokens` extra) this is `estimate_tokens`.
    """
    if not text:
        return 0, True
    try:
        enc = _encoding(_encoding_name(model))
    except ImportError:
        return estimate_tokens(text), False
    return sum(len(enc.encode_ordinary(piece)) for piece in _bpe_pieces(text)), True


# bpe-openai refuses a text of a million characters or more, and one of more than 200,000 tokens; a character is
# at most 4 tokens (its UTF-8 bytes), so a piece this long is within both limits.
_BPE_PIECE = 50_000


def _bpe_pieces(text: str) -> list[str]:
    """`text` in pieces the BPE takes, each cut before a space or newline where one is near: the BPE counts a
    word with the space before it, so the pieces count as the whole text does (a word is cut only where there
    is no space for 25,000 characters)."""
    pieces: list[str] = []
    start = 0
    while len(text) - start > _BPE_PIECE:
        end = start + _BPE_PIECE
        cut = max(text.rfind(" ", start + _BPE_PIECE // 2, end), text.rfind("\n", start + _BPE_PIECE // 2, end))
        if cut > start:
            end = cut
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


async def count_usage(model: str, prompt_text: str, completion_text: str,
                      prompt_media: Callable[[], int] | None = None) -> Usage:
    """Prompt and completion counted locally, on a worker thread: BPE is too slow for the event loop.
    `prompt_media` adds the prompt's images and documents (it may read them whole)."""
    import asyncio

    def work() -> Usage:
        media = prompt_media() if prompt_media is not None else 0
        return Usage(count_tokens(prompt_text, model)[0] + media, count_tokens(completion_text, model)[0])

    return await asyncio.get_running_loop().run_in_executor(None, work)


async def reported_or_counted(reported: Usage | None, model: str, prompt_text: str, completion_text: str,
                              extra: dict[str, Any], prompt_media: Callable[[], int] | None = None) -> Usage:
    """The upstream's usage when it reported one; else a local count (noted in the log entry's extra)."""
    if reported is not None:
        return reported
    extra["usage_counted"] = True
    return await count_usage(model, prompt_text, completion_text, prompt_media)
