"""Input tokens of a request, counted before it is sent: Anthropic's `POST /v1/messages/count_tokens` and
OpenAI's `POST /v1/responses/input_tokens` answer with this count.

Text is counted with the model's BPE (exact for OpenAI models; o200k_base, within a few percent, for the
others) plus the 3 tokens that frame each message and the 3 that start the reply, as OpenAI's chat format
has them. Tools and tool calls count as their JSON. Images and documents are estimated by the rules of the
provider that serves the model (accounting/media_tokens.py). A router counts as the model it escalates
to: its vision model for a prompt with images or files, else its strong model.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.accounting.auth import Identity
from switchboard.accounting.media_tokens import media_tokens, model_scheme
from switchboard.accounting.tokens import count_tokens
from switchboard.core.request import ChatRequest, messages_text
from switchboard.wildcards import allowed

if TYPE_CHECKING:
    from switchboard.app import Gateway
    from switchboard.config import ModelConfig

_PER_MESSAGE = 3
_REPLY = 3


def counted_model(gw: Gateway, chat: ChatRequest, identity: Identity) -> ModelConfig:
    """The model whose rules count the request, or the 404 for a model this key cannot call."""
    router = gw.routers.get(chat.model)
    model = gw.pipeline.peek(chat.model) if router is None else router.model(
        router.settings.vision_model if router.settings.vision_model and chat.has_visual_input()
        else router.settings.strong)
    if model is None or identity.allowed_models is not None and not allowed(chat.model, identity.allowed_models):
        raise gw.pipeline.not_found(chat.model, identity.allowed_models)
    return model


async def input_tokens(chat: ChatRequest, model: ModelConfig) -> int:
    """The request's input tokens for `model` (counted on a worker thread: BPE is too slow for the loop)."""
    messages = chat.body["messages"]
    tools = chat.body.get("tools")
    encoding = model.deployments[0].upstream_model if model.deployments else model.name

    def work() -> int:
        text = sum(count_tokens(_text(msg), encoding)[0] + _PER_MESSAGE for msg in messages)
        schema = count_tokens(orjson.dumps(tools).decode(), encoding)[0] if tools else 0
        return text + schema + _REPLY + media_tokens(chat.media_parts(), model_scheme(model))

    return await asyncio.get_running_loop().run_in_executor(None, work)


def _text(message: dict[str, Any]) -> str:
    calls = message.get("tool_calls")
    return messages_text([message]) + (orjson.dumps(calls).decode() if calls else "")
