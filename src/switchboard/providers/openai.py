"""The OpenAI-compatible adapter: OpenAI, vLLM, Ollama's /v1, Groq, Together, DeepSeek, Mistral...

The canonical request already is this wire format, so the body passes through
with unknown fields intact; only the model id changes. The exceptions are
provider-specific marks that OpenAI (and strict compatible servers) refuse:
Gemini's thought signature on a tool call (`extra_content`, see gemini.py),
sent only where a Gemini model answers (the upstream model's name says gemini,
or the host is Google's), and Claude's prompt-cache breakpoints
(`cache_control` on content parts and tools), thinking blocks and reasoning
text on assistant messages, and `thinking` (see reasoning.py), sent only where
a Claude model answers (OpenRouter and other proxies take them). OpenAI's
reasoning models (o-series, gpt-5; or any deployment with `reasoning: true`) get
max_completion_tokens for max_tokens, `reasoning_effort` for Anthropic's `thinking`,
and none of the sampling parameters they refuse; OpenAI's chat models (gpt-4o...,
or `reasoning: false`) get no `reasoning_effort`, which they refuse. A history
that one model wrote may reach another after a fallback, so they are removed
for the others. An inline file with no filename (an Anthropic document without a title) gets one, which
OpenAI requires; a text file becomes a text part (OpenAI's chat API reads PDFs only). For streams we always
ask the upstream for usage (``stream_options.include_usage``) so that every stream can be priced; the
pipeline hides that last chunk from clients that did not ask for it. OpenAI takes at most 4 stop sequences,
and its reasoning models none ("Unsupported parameter: 'stop' is not supported with this model"); the gateway
applies the others itself (`providers.local_stops`); a deployment's `max_stop_sequences` sets another limit for
a compatible server that takes more (vLLM) or fewer.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from switchboard import errors
from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import UpstreamError
from switchboard.http.sse import SSEDecoder
from switchboard.providers.base import Provider, iter_body
from switchboard.providers.documents import EXTENSIONS, TEXT_FORMATS, data_url_mime, document_of, inlined
from switchboard.providers.local_stops import Chunks, StopLimits, StopPlan
from switchboard.providers.reasoning import for_openai_reasoning, openai_reasoning_deployment

_CHAT_STOPS = StopLimits(most=4)  # OpenAI's documented limit on `stop`
_REASONING_STOPS = StopLimits(most=0, hidden_output=True)  # they refuse `stop`, and stream no reasoning


class OpenAIProvider(Provider):
    kind = "openai"

    def url(self, deployment: Deployment, path: str) -> str:
        return deployment.base_url + path

    def stop_limits(self, deployment: Deployment) -> StopLimits:
        return _REASONING_STOPS if openai_reasoning_deployment(deployment) else _CHAT_STOPS

    def payload(self, request: ChatRequest, deployment: Deployment, stream: bool, stops: StopPlan) -> dict[str, Any]:
        body = dict(request.body)
        body["model"] = deployment.upstream_model
        body.pop("anthropic_beta", None)
        if "stop" in body:
            _with_stops(body, stops.upstream)
        reasoning = openai_reasoning_deployment(deployment)
        if reasoning:
            for_openai_reasoning(body)
        else:
            if reasoning is False:
                body.pop("reasoning_effort", None)
            if body.get("max_completion_tokens") is not None:  # OpenAI refuses the two together; this one wins
                body.pop("max_tokens", None)
        foreign = _foreign_marks(deployment.upstream_model, deployment.base_url)
        if foreign:
            if "thinking" in foreign:
                body.pop("thinking", None)
                body.pop("effort", None)
            messages = body.get("messages")
            if isinstance(messages, list):
                for message in messages:
                    if _marked(message, foreign):
                        body["messages"] = [_unmarked(m, foreign) if _marked(m, foreign) else m for m in messages]
                        break
            tools = body.get("tools")
            if tools and "cache_control" in foreign and isinstance(tools, list):
                body["tools"] = [_without(t, foreign) for t in tools]
        files = _files_for_openai(body["messages"], self.kind)
        if files is not None:
            body["messages"] = files
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
        stops = self.stop_plan(request, deployment)
        data = await self.send_json(deployment, self.url(deployment, "/chat/completions"), self.headers(deployment),
                                    self.payload(request, deployment, False, stops))
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not a chat completion")
        return stops.cut(data)

    async def stream_chunks(self, request: ChatRequest, deployment: Deployment, stops: StopPlan) -> Chunks:
        response = await self.open(deployment, "POST", self.url(deployment, "/chat/completions"),
                                   self.headers(deployment),
                                   orjson.dumps(self.payload(request, deployment, True, stops)))
        decoder = SSEDecoder()
        done = finished = False
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
                    finished = finished or _finishes(chunk)
                    yield chunk
            if not (done or finished):  # cut short by something that ended the body cleanly (a proxy)
                raise UpstreamError(errors.CONNECTION, f"{deployment.id}: stream ended before its finish_reason")
        finally:
            response.release()

    async def embeddings(self, body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        payload = dict(body)
        payload["model"] = deployment.upstream_model
        data = await self.send_json(deployment, self.url(deployment, "/embeddings"), self.headers(deployment), payload)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not an embeddings list")
        return data


def _with_stops(body: dict[str, Any], upstream: list[str]) -> None:
    """The stop sequences the upstream takes, as the client sent them where that is all of them. An empty stop
    string stops nothing on OpenAI, but OpenAI-compatible servers differ (some match it at once, some refuse it
    or an empty list), so neither is sent."""
    stop = body["stop"]
    if upstream and upstream == ([stop] if isinstance(stop, str) else stop):
        return
    if upstream:
        body["stop"] = upstream
    else:
        del body["stop"]


def _finishes(chunk: Any) -> bool:
    """Whether a stream chunk ends a choice (servers that leave out `[DONE]` still send a finish_reason)."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    return isinstance(choices, list) and any(isinstance(c, dict) and c.get("finish_reason") for c in choices)


@functools.lru_cache(maxsize=1024)
def _foreign_marks(upstream_model: str, base_url: str) -> frozenset[str]:
    """The provider-specific keys a deployment's model would refuse."""
    model = upstream_model.lower()
    gemini = "gemini" in model or "googleapis.com" in base_url
    claude = "claude" in model or "anthropic.com" in base_url
    return _MARKS[gemini, claude]


_GEMINI = frozenset({"extra_content"})
_CLAUDE = frozenset({"cache_control", "thinking", "thinking_blocks", "reasoning_content"})
_MARKS = {(False, False): _GEMINI | _CLAUDE, (True, False): _CLAUDE, (False, True): _GEMINI, (True, True): frozenset()}


def _has(item: Any, keys: frozenset[str]) -> bool:
    return isinstance(item, dict) and not keys.isdisjoint(item)


def _without(item: Any, keys: frozenset[str]) -> Any:
    return {k: v for k, v in item.items() if k not in keys} if _has(item, keys) else item


def _marked(message: Any, keys: frozenset[str]) -> bool:
    """Whether a message, its content parts or its tool calls carry one of `keys`."""
    if not isinstance(message, dict):
        return False
    if not keys.isdisjoint(message):
        return True
    for field in ("content", "tool_calls"):
        items = message.get(field)
        if items.__class__ is list:
            for item in items:
                if _has(item, keys):
                    return True
    return False


def _unmarked(message: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    out = {k: v for k, v in message.items() if k not in keys}
    for field in ("content", "tool_calls"):
        if isinstance(out.get(field), list):
            out[field] = [_without(item, keys) for item in out[field]]
    return out


def _file_spec(part: Any) -> dict[str, Any] | None:
    spec = part.get("file") if part.__class__ is dict and part.get("type") == "file" else None
    return spec if isinstance(spec, dict) and isinstance(spec.get("file_data"), str) else None


def _needs_change(part: Any) -> bool:
    """An inline file without a filename (OpenAI requires one), or a text file (OpenAI's chat API reads PDFs only)."""
    spec = _file_spec(part)
    return spec is not None and (not spec.get("filename") or data_url_mime(spec["file_data"]) in TEXT_FORMATS)


def _files_for_openai(messages: list[dict[str, Any]], provider: str) -> list[dict[str, Any]] | None:
    """The messages with a filename on every inline file (Anthropic documents and other clients' files may have
    none) and each text file inlined as text; None when no file needs either."""
    if not any(m.get("content").__class__ is list and any(map(_needs_change, m["content"])) for m in messages):
        return None
    out = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if content.__class__ is list and any(map(_needs_change, content)):
            content = [_file_for_openai(p, f"messages[{i}].content[{j}]", provider) if _needs_change(p) else p
                       for j, p in enumerate(content)]
            message = {**message, "content": content}
        out.append(message)
    return out


def _file_for_openai(part: dict[str, Any], param: str, provider: str) -> dict[str, Any]:
    spec = part["file"]
    mime = data_url_mime(spec["file_data"])
    if mime in TEXT_FORMATS:
        return {"type": "text", "text": inlined(document_of(part, param, provider), f"{param}.file.file_data")}
    return {**part, "file": {**spec, "filename": "document." + EXTENSIONS.get(mime, "bin")}}


def stream_error(err: Any, deployment: Deployment) -> UpstreamError:
    """An error event sent inside an otherwise successful stream."""
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = str(err.get("message") or "upstream stream error")
    code = err.get("status") or err.get("code")
    status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else 500
    return UpstreamError(errors.kind_for_status(status, message), f"{deployment.id}: {message}")
