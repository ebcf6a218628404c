"""What a request asks of a model: an estimate of its tokens for rate limits, and a bound for credit holds.

A tpm limit counts the estimate and corrects it once the usage is known, so the estimate only has to be good
(images and documents are estimated by the serving provider's rules: media_tokens.py).
A credit hold must not be exceeded, so it rests on a bound: a tokenizer that works on bytes (every BPE of the
major providers, and SentencePiece with byte fallback) makes at most one token of each byte of UTF-8 text, plus
a few tokens that frame each message. Images have no text to bound them: each is held at the most tokens the
model can make of one (`ModelConfig.image_tokens`) or a configured reserve. A document (a PDF's pages become text
and images) has no bound short of the model's context window, which bounds every prompt: a longer one is refused
and not billed. The output is held at the client's cap for each of its `n` choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.accounting.tokens import estimate_tokens

if TYPE_CHECKING:
    from switchboard.core.request import ChatRequest

_PER_MESSAGE = 8  # role and framing tokens around each message


@dataclass(frozen=True, slots=True)
class PromptBound:
    text: int
    images: int = 0
    documents: int = 0

    def tokens(self, per_image: int, per_document: int) -> int:
        return self.text + self.images * per_image + self.documents * per_document


@dataclass(frozen=True, slots=True)
class Demand:
    prompt_estimate: int  # of the text: counted against tpm limits, corrected when the usage is known
    # The prompt is at most `text + images * tokens per image + documents * tokens per document` tokens, and at
    # most the model's context window (credit holds; computed only for one).
    prompt_bound: Callable[[], PromptBound]
    max_output: int | None = None  # the client's cap on output tokens per choice, if it gave one
    choices: int = 1
    media: tuple[dict[str, Any], ...] = ()  # image and file parts, estimated by the serving model's rules


def chat_demand(request: ChatRequest) -> Demand:
    """The demand of a canonical chat request."""
    return Demand(estimate_tokens(request.prompt_text()), lambda: _chat_bound(request.body),
                  request.max_output_tokens, request.body.get("n") or 1, request.media_parts())


def _chat_bound(body: dict[str, Any]) -> PromptBound:
    bound = 0
    images = 0
    documents = 0
    for msg in body["messages"]:
        bound += _PER_MESSAGE
        content = msg.get("content")
        if isinstance(content, str):
            bound += len(content.encode())
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text":
                    bound += len(str(part.get("text", "")).encode())
                elif part.get("type") == "image_url":
                    images += 1
                elif part.get("type") == "file":
                    documents += 1
                else:  # audio: its JSON is more bytes than the tokens it becomes
                    bound += len(orjson.dumps(part))
        for call in msg.get("tool_calls") or ():
            bound += len(orjson.dumps(call))
    for key in ("tools", "response_format"):
        if body.get(key):
            bound += len(orjson.dumps(body[key]))
    return PromptBound(bound, images, documents)


def text_demand(text: str) -> Demand:
    """The demand of an input without output (embeddings)."""
    return Demand(estimate_tokens(text), lambda: PromptBound(len(text.encode()) + _PER_MESSAGE), 0)
