"""The OpenAI-compatible adapter: OpenAI, vLLM, Ollama's /v1, Groq, Together, DeepSeek, Mistral...

The canonical request already is this wire format, so the body passes through
with unknown fields intact; only the model id changes. The exception is Gemini's
thought signature on a tool call (`extra_content`, see gemini.py): a history
that a Gemini model wrote may reach another model after a fallback, and OpenAI
refuses fields it does not know inside a message, so it is sent only where a
Gemini model answers (the upstream model's name says gemini, or the host is
Google's). For streams we always ask the upstream for usage
(``stream_options.include_usage``) so that every stream can be priced; the
pipeline hides that last chunk from clients that did not ask for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from switchboard import errors
from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import UpstreamError
from switchboard.http.sse import SSEDecoder
from switchboard.providers.base import Provider, iter_body


class OpenAIProvider(Provider):
    kind = "openai"

    def url(self, deployment: Deployment, path: str) -> str:
        return deployment.base_url + path

    def payload(self, request: ChatRequest, deployment: Deployment, stream: bool) -> dict[str, Any]:
        body = dict(request.body)
        body["model"] = deployment.upstream_model
        if not _speaks_gemini(deployment):
            messages = body.get("messages")
            if isinstance(messages, list) and any(_signed(m) for m in messages):
                body["messages"] = [_unsigned(m) if _signed(m) else m for m in messages]
        if stream:
            body["stream"] = True
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return body

    async def chat(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        data = await self.send_json(deployment, self.url(deployment, "/chat/completions"), self.headers(deployment),
                                    self.payload(request, deployment, False))
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not a chat completion")
        return data

    async def chat_stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[dict[str, Any]]:
        response = await self.open(deployment, "POST", self.url(deployment, "/chat/completions"),
                                   self.headers(deployment), orjson.dumps(self.payload(request, deployment, True)))
        decoder = SSEDecoder()
        done = False
        try:
            async for raw in iter_body(response, deployment):
                if done:
                    continue  # read to the end so the connection can be reused
                for _event, data in decoder.feed(raw):
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise UpstreamError(errors.SERVER, f"{deployment.id}: invalid JSON in stream") from None
                    if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                        raise stream_error(chunk["error"], deployment)
                    yield chunk
        finally:
            response.release()

    async def embeddings(self, body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        payload = dict(body)
        payload["model"] = deployment.upstream_model
        data = await self.send_json(deployment, self.url(deployment, "/embeddings"), self.headers(deployment), payload)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not an embeddings list")
        return data


def _speaks_gemini(deployment: Deployment) -> bool:
    return "gemini" in deployment.upstream_model.lower() or "googleapis.com" in deployment.base_url


def _signed(message: Any) -> bool:
    """An assistant message with a tool call that carries Gemini's `extra_content`."""
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    return isinstance(calls, list) and any(isinstance(c, dict) and "extra_content" in c for c in calls)


def _unsigned(message: dict[str, Any]) -> dict[str, Any]:
    calls = [{k: v for k, v in c.items() if k != "extra_content"} if isinstance(c, dict) else c
             for c in message["tool_calls"]]
    return {**message, "tool_calls": calls}


def stream_error(err: Any, deployment: Deployment) -> UpstreamError:
    """An error event sent inside an otherwise successful stream."""
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = str(err.get("message") or "upstream stream error")
    code = err.get("status") or err.get("code")
    status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else 500
    return UpstreamError(errors.kind_for_status(status, message), f"{deployment.id}: {message}")
