"""The Anthropic Messages adapter: canonical chat request -> POST /v1/messages, and back.

What needs translating, and the choices made:

- system/developer messages become the top-level `system` prompt; user and
  assistant turns alternate, so consecutive same-role messages are merged and
  `tool` messages become `tool_result` blocks in a user turn.
- Images are sent inline (base64 `source` blocks): http(s) URLs are fetched
  by the gateway (`providers.images`, size cap, timeout, no private addresses
  unless the deployment sets `allow_private_image_urls`).
- Files (`file` parts) become `document` blocks: a PDF as base64, a text file
  as a text source; the filename is the document's title.
- `max_tokens` is required by Anthropic: when the client sets none, the
  catalog's max output for the model is used, else 4096.
- `temperature` above Anthropic's maximum of 1 is clamped to 1.
- Stop sequences made only of whitespace (`"\n"`), which Claude refuses, are
  applied by the gateway (`providers.local_stops`). Anthropic documents no
  limit on their number.
- JSON mode: the Messages API has no `response_format`, so JSON object/schema
  output is obtained by forcing a tool call (`json_response`, whose input
  schema is the requested schema) and returning its input as the message
  content, with finish_reason `stop`.
- Extended thinking (`reasoning_effort`, or `thinking` with a budget) and the
  signed thinking blocks that come back: see `providers.reasoning`.
- `n` > 1 and `logprobs` cannot be served and get a clear 400; penalties,
  `seed` and `logit_bias` have no Anthropic equivalent and are ignored.
- Prompt caching: a `cache_control` object on a content part (text or image,
  in any role, tool results included) or on a tool is passed on to Anthropic
  on the same block; cache reads and writes are reported as
  `prompt_tokens_details.cached_tokens` and `.cache_write_tokens` (and priced
  apart, see `Pricing`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson

from switchboard import errors
from switchboard.config import Deployment
from switchboard.core.anthropic_format import FINISH_FOR_STOP
from switchboard.core.request import ChatRequest
from switchboard.errors import InvalidRequest, UpstreamError
from switchboard.providers import canonical as c
from switchboard.providers.base import MALFORMED, Provider, error_message, malformed_answer, retry_after, sse_json
from switchboard.providers.documents import document_of
from switchboard.providers.images import load_image
from switchboard.providers.local_stops import Chunks, StopLimits, StopPlan, answers_json, whitespace_only
from switchboard.providers.reasoning import (CLAUDE_EFFORTS, anthropic_blocks, canonical_block, drop_sampling,
                                            thinking_for)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_response"
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_CLAUDE_STOPS = StopLimits(refuses=whitespace_only)  # no limit on their number is documented

# Anthropic error type -> upstream error kind (the retry/fallback logic acts on the kind).
_KIND_FOR_ERROR_TYPE: dict[str, str] = {
    "invalid_request_error": errors.BAD_REQUEST,
    "authentication_error": errors.AUTH,
    "permission_error": errors.AUTH,
    "billing_error": errors.PAYMENT,
    "not_found_error": errors.NOT_FOUND,
    "request_too_large": errors.BAD_REQUEST,
    "rate_limit_error": errors.RATE_LIMIT,
    "api_error": errors.SERVER,
    "overloaded_error": errors.OVERLOADED,
    "timeout_error": errors.TIMEOUT,
}


def error_kind(error_type: str | None, status: int, message: str) -> str:
    """The kind of an Anthropic error, refined by its message (context length, content policy)."""
    if "prompt is too long" in message.lower() or "context window" in message.lower():
        return errors.CONTEXT_LENGTH
    kind = _KIND_FOR_ERROR_TYPE.get(error_type or "")
    if kind is None:
        return errors.kind_for_status(status, message) if status else errors.SERVER
    if kind == errors.BAD_REQUEST and status:
        return errors.kind_for_status(status, message)  # may be a content-policy refusal
    return kind


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{message} (Anthropic models)", param=param)


def default_max_tokens(upstream_model: str) -> int:
    from switchboard.catalog import lookup

    entry = lookup(upstream_model)
    return entry.max_output_tokens if entry and entry.max_output_tokens else DEFAULT_MAX_TOKENS


# ---------------------------------------------------------------- request


class _Turns:
    """Builds strictly alternating user/assistant turns, merging consecutive same-role content."""

    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []

    def add(self, role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1]["content"].extend(blocks)
        else:
            self.turns.append({"role": role, "content": list(blocks)})


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    """Text of a string or of text/refusal parts; Anthropic rejects empty text blocks, so they are dropped."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for part in content or ():
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if isinstance(text, str) and text:
            block: dict[str, Any] = {"type": "text", "text": text}
            if isinstance(part.get("cache_control"), dict):  # prompt caching, as LiteLLM-style clients mark it
                block["cache_control"] = part["cache_control"]
            out.append(block)
    return out


def _tool_use(call: Any, param: str) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
        raise _bad(param, f"'{param}' must have an 'id' and a 'function' with a 'name'.")
    return {"type": "tool_use", "id": call["id"], "name": fn["name"], "input": c.tool_arguments(call, param)}


def _document(part: dict[str, Any], param: str) -> dict[str, Any]:
    """A canonical file part as a document block: a PDF as base64, a text file as its text."""
    doc = document_of(part, param, "anthropic")
    if doc.is_text:
        source = {"type": "text", "media_type": "text/plain", "data": doc.text(f"{param}.file.file_data")}
    else:
        source = {"type": "base64", "media_type": doc.mime, "data": doc.b64}
    block: dict[str, Any] = {"type": "document", "source": source}
    if doc.filename:
        block["title"] = doc.filename
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


class RequestBuilder:
    """One canonical request turned into a Messages API body."""

    def __init__(self, provider: AnthropicProvider, deployment: Deployment) -> None:
        self.provider = provider
        self.deployment = deployment
        self.images: list[tuple[dict[str, Any], str, str]] = []  # (block to fill, url, param)

    def _image(self, part: dict[str, Any], param: str) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "image", "source": {"type": "base64"}}
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        self.images.append((block, part["image_url"]["url"], f"{param}.image_url.url"))
        return block

    def _user_blocks(self, content: Any, param: str) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return _text_blocks(content)
        out = []
        for j, part in enumerate(content):
            kind = part.get("type")
            if kind == "text":
                out.extend(_text_blocks([part]))
            elif kind == "image_url":
                out.append(self._image(part, f"{param}[{j}]"))
            elif kind == "file":
                out.append(_document(part, f"{param}[{j}]"))
            else:
                raise _bad(f"{param}[{j}].type", f"Content parts of type {kind!r} are not supported")
        return out

    async def build(self, body: dict[str, Any], stream: bool, stops: list[str]) -> dict[str, Any]:
        c.openai_only("anthropic", body)
        if (body.get("n") or 1) > 1:
            raise _bad("n", "'n' greater than 1 is not supported")
        if body.get("logprobs"):
            raise _bad("logprobs", "'logprobs' is not supported")
        system: list[dict[str, Any]] = []
        turns = _Turns()
        for i, msg in enumerate(body["messages"]):
            role, content, p = msg["role"], msg.get("content"), f"messages[{i}]"
            if role in ("system", "developer"):
                system.extend(_text_blocks(content))
            elif role == "user":
                turns.add("user", self._user_blocks(content, f"{p}.content"))
            elif role == "assistant":
                blocks = anthropic_blocks(msg) + _text_blocks(content)
                blocks += [_tool_use(c, f"{p}.tool_calls[{k}]") for k, c in enumerate(msg.get("tool_calls") or ())]
                turns.add("assistant", blocks)
            elif role == "tool":
                result: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg["tool_call_id"]}
                blocks = _text_blocks(content)
                if blocks:
                    result["content"] = blocks
                turns.add("user", [result])
            else:
                raise _bad(f"{p}.role", f"Messages with role {role!r} are not supported")
        if not turns.turns:
            raise _bad("messages", "At least one user or assistant message is required")
        await self._load_images()
        dep = self.deployment
        given = body.get("max_completion_tokens") or body.get("max_tokens")
        max_tokens = given or default_max_tokens(dep.upstream_model)
        payload: dict[str, Any] = {"model": dep.upstream_model, "max_tokens": max_tokens, "messages": turns.turns}
        if system:
            payload["system"] = system
        if stops:
            payload["stop_sequences"] = stops
        if body.get("temperature") is not None:
            payload["temperature"] = min(1.0, body["temperature"])
        if body.get("top_p") is not None:
            payload["top_p"] = body["top_p"]
        if isinstance(body.get("top_k"), int):
            payload["top_k"] = body["top_k"]
        if isinstance(body.get("user"), str):
            payload["metadata"] = {"user_id": body["user"]}
        self._tools(body, payload)
        thinking, payload["max_tokens"] = thinking_for(body, max_tokens, bool(given))
        if thinking is not None and (payload.get("tool_choice") or {}).get("type") not in ("any", "tool"):
            # Claude thinks only at its own sampling settings, and not while a tool is forced (JSON mode too).
            payload["thinking"] = thinking
            drop_sampling(payload, "temperature", "top_p", "top_k")
        if body.get("effort") in CLAUDE_EFFORTS:
            payload["output_config"] = {"effort": body["effort"]}
        if stream:
            payload["stream"] = True
        return payload

    async def _load_images(self) -> None:
        if not self.images:
            return
        allow_private = bool(self.deployment.options.get("allow_private_image_urls"))
        client = self.provider.client
        loaded = await asyncio.gather(*(load_image(url, client, allow_private=allow_private, param=param)
                                        for _, url, param in self.images))
        for (block, _, param), (mime, data) in zip(self.images, loaded):
            if mime not in IMAGE_TYPES:
                raise _bad(param, f"Image type {mime} is not supported; use JPEG, PNG, GIF or WebP")
            block["source"].update(media_type=mime, data=base64.b64encode(data).decode("ascii"))

    def _tools(self, body: dict[str, Any], payload: dict[str, Any]) -> None:
        tools = [{"name": t["function"]["name"],
                  **({"description": t["function"]["description"]} if t["function"].get("description") else {}),
                  "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
                  **({"cache_control": t["cache_control"]} if isinstance(t.get("cache_control"), dict) else {})}
                 for t in body.get("tools") or ()]
        choice = body.get("tool_choice")
        fmt = body.get("response_format") or {}
        if fmt.get("type") in ("json_object", "json_schema"):
            if any(t["name"] == JSON_TOOL for t in tools):
                raise _bad("tools", f"A tool may not be named {JSON_TOOL!r} together with response_format")
            if fmt["type"] == "json_schema":
                spec = fmt["json_schema"]
                schema = spec.get("schema") or {"type": "object"}
                description = spec.get("description") or f"Respond with a JSON object matching the '{spec['name']}' schema."
            else:
                schema, description = {"type": "object"}, "Respond with a JSON object."
            if choice == "none":
                tools = []
            tools.append({"name": JSON_TOOL, "description": description, "input_schema": schema})
            if len(tools) == 1:
                choice = {"type": "function", "function": {"name": JSON_TOOL}}
            elif not isinstance(choice, dict):
                choice = "required"  # the model answers with the JSON tool or a real tool call
        if not tools:
            return
        payload["tools"] = tools
        if choice is not None or body.get("parallel_tool_calls") is False:
            anthropic_choice = _tool_choice(choice or "auto")
            if body.get("parallel_tool_calls") is False and anthropic_choice["type"] != "none":
                anthropic_choice["disable_parallel_tool_use"] = True
            payload["tool_choice"] = anthropic_choice


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise _bad("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or name a function")
    return {"type": "tool", "name": name}


# ---------------------------------------------------------------- response


def openai_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage: prompt tokens include cache reads and cache writes."""
    usage = usage if isinstance(usage, dict) else {}

    def n(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) else 0

    cached, written = n("cache_read_input_tokens"), n("cache_creation_input_tokens")
    by_ttl = usage.get("cache_creation")
    hour = by_ttl.get("ephemeral_1h_input_tokens") if isinstance(by_ttl, dict) else 0
    return c.usage(n("input_tokens") + cached + written, n("output_tokens"), cached=cached, cache_write=written,
                   cache_write_1h=min(hour, written) if isinstance(hour, int) else 0)


def _merge_usage(into: dict[str, Any], usage: Any) -> None:
    """Fold a stream event's usage into the running one: its counts, and the cache writes by TTL."""
    for key, value in (usage.items() if isinstance(usage, dict) else ()):
        if isinstance(value, int) or key == "cache_creation" and isinstance(value, dict):
            into[key] = value


def to_completion(message: dict[str, Any], json_mode: bool) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    json_answer: str | None = None
    thinking: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(canonical_block(block))  # type: ignore[arg-type]
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if json_mode and block.get("name") == JSON_TOOL:
                json_answer = arguments
            else:
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": arguments}})
    finish = FINISH_FOR_STOP.get(message.get("stop_reason") or "end_turn", "stop")
    if json_answer is not None:
        content: str | None = json_answer
        if finish == "tool_calls" and not calls:
            finish = "stop"
    else:
        content = "".join(texts) if texts or not calls else None
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        msg["reasoning_content"] = "".join(b.get("thinking", "") for b in thinking)
        msg["thinking_blocks"] = thinking
    choice: dict[str, Any] = {"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}
    if isinstance(message.get("stop_sequence"), str):
        choice["stop_sequence"] = message["stop_sequence"]
    return {"id": message.get("id") or "msg", "object": "chat.completion", "created": int(time.time()),
            "model": message.get("model"), "choices": [choice], "usage": openai_usage(message.get("usage"))}


class StreamTranslator:
    """Anthropic stream events -> OpenAI chunks, one event at a time."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self.tool_index: dict[int, int] = {}  # content block index -> OpenAI tool_call index
        self.json_blocks: set[int] = set()
        self.thinking: dict[int, dict[str, Any]] = {}  # content block index -> the thinking block so far
        self.stop_reason: str | None = None
        self.done = False

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def usage_chunk(self, output_at_least: int = 0) -> dict[str, Any]:
        """The usage-only last chunk; a stream cut short reports at least `output_at_least` output tokens."""
        final = self.chunk({})
        final["choices"] = []
        usage = self.usage
        if output_at_least > usage.get("output_tokens", 0):
            usage = {**usage, "output_tokens": output_at_least}
        final["usage"] = openai_usage(usage)
        return final

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id") or ""
            self.model = message.get("model") or ""
            _merge_usage(self.usage, message.get("usage"))
            return [self.chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            index, block = event.get("index", 0), event.get("content_block") or {}
            if block.get("type") == "tool_use":
                if self.json_mode and block.get("name") == JSON_TOOL:
                    self.json_blocks.add(index)
                    return []
                n = self.tool_index[index] = len(self.tool_index)
                return [self.chunk({"tool_calls": [{"index": n, "id": block.get("id"), "type": "function",
                                                    "function": {"name": block.get("name"), "arguments": ""}}]})]
            if block.get("type") == "text" and block.get("text"):
                return [self.chunk({"content": block["text"]})]
            if block.get("type") == "thinking":
                self.thinking[index] = canonical_block(block)  # type: ignore[assignment]
                thought = block.get("thinking")
                return [self.chunk({"reasoning_content": thought})] if thought else []
            if block.get("type") == "redacted_thinking":
                return [self.chunk({"thinking_blocks": [canonical_block(block)]})]
            return []
        if kind == "content_block_delta":
            index, delta = event.get("index", 0), event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self.chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "thinking_delta" and index in self.thinking:
                self.thinking[index]["thinking"] += delta.get("thinking", "")
                return [self.chunk({"reasoning_content": delta.get("thinking", "")})]
            if delta.get("type") == "signature_delta" and index in self.thinking:
                self.thinking[index]["signature"] += delta.get("signature", "")
                return []
            if delta.get("type") == "input_json_delta":
                partial = delta.get("partial_json", "")
                if index in self.json_blocks:
                    return [self.chunk({"content": partial})] if partial else []
                if index in self.tool_index:
                    return [self.chunk({"tool_calls": [{"index": self.tool_index[index],
                                                        "function": {"arguments": partial}}]})]
            return []  # citation deltas have no OpenAI counterpart
        if kind == "message_delta":
            _merge_usage(self.usage, event.get("usage"))
            delta = event.get("delta") or {}
            self.stop_reason = delta.get("stop_reason")
            finish = FINISH_FOR_STOP.get(self.stop_reason or "end_turn", "stop")
            if finish == "tool_calls" and not self.tool_index:
                finish = "stop"  # only the JSON-mode tool was called
            chunk = self.chunk({}, finish)
            if isinstance(delta.get("stop_sequence"), str):
                chunk["choices"][0]["stop_sequence"] = delta["stop_sequence"]
            return [chunk]
        if kind == "message_stop":
            self.done = True
            return [self.usage_chunk()]
        if kind == "content_block_stop" and event.get("index", 0) in self.thinking:
            # The whole signed block, once its signature is complete, for the client to send back.
            return [self.chunk({"thinking_blocks": [self.thinking.pop(event.get("index", 0))]})]
        return []  # ping, other content_block_stops, and event types added later


# ---------------------------------------------------------------- the adapter


class AnthropicProvider(Provider):
    kind = "anthropic"

    def headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION,
                   "accept": "application/json"}
        if deployment.api_key is not None:
            headers[deployment.options.get("api_key_header") or "x-api-key"] = deployment.api_key.reveal()
        version = deployment.options.get("api_version")
        if version:
            headers["anthropic-version"] = str(version)
        extra = deployment.options.get("headers")
        if extra:
            headers.update(extra)
        return headers

    def request_headers(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, str]:
        """The deployment's headers, with the client's beta features (`anthropic_beta`, from an Anthropic-format
        client's `anthropic-beta` header) added to any the deployment sets."""
        headers = self.headers(deployment)
        betas = body.get("anthropic_beta")
        if isinstance(betas, list) and betas:
            key = next((k for k in headers if k.lower() == "anthropic-beta"), "anthropic-beta")
            configured = [b.strip() for b in headers.pop(key, "").split(",") if b.strip()]
            headers["anthropic-beta"] = ",".join(dict.fromkeys([*configured, *map(str, betas)]))
        return headers

    def url(self, deployment: Deployment) -> str:
        base = deployment.base_url
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")

    @staticmethod
    def json_mode(request: ChatRequest) -> bool:
        return answers_json(request.body)

    def stop_limits(self, deployment: Deployment) -> StopLimits:
        return _CLAUDE_STOPS

    async def chat(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        stops = self.stop_plan(request, deployment)
        payload = await RequestBuilder(self, deployment).build(request.body, stream=False, stops=stops.upstream)
        data = await self.send_json(deployment, self.url(deployment), self.request_headers(deployment, request.body),
                                    payload)
        if not isinstance(data, dict) or data.get("type") != "message":
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not a Message")
        try:
            completion = to_completion(data, self.json_mode(request))
        except MALFORMED as exc:
            raise malformed_answer(deployment, exc) from None
        return stops.cut(completion)

    def chat_stream(self, request: ChatRequest, deployment: Deployment) -> Chunks:
        stops = self.stop_plan(request, deployment)
        translator = StreamTranslator(self.json_mode(request))
        return stops.cut_stream(self._chunks(request, deployment, stops, translator), translator.usage_chunk)

    async def _chunks(self, request: ChatRequest, deployment: Deployment, stops: StopPlan,
                      translator: StreamTranslator) -> Chunks:
        payload = await RequestBuilder(self, deployment).build(request.body, stream=True, stops=stops.upstream)
        response = await self.open(deployment, "POST", self.url(deployment),
                                   self.request_headers(deployment, request.body),
                                   orjson.dumps(payload))
        try:
            async for event_name, event in sse_json(response, deployment):
                if event.get("type") == "error" or event_name == "error":
                    raise stream_error(event.get("error"), deployment)
                for chunk in translator.feed(event):
                    yield chunk
            if not translator.done:
                raise UpstreamError(errors.CONNECTION, f"{deployment.id}: stream ended before message_stop")
        except MALFORMED as exc:
            raise malformed_answer(deployment, exc) from None
        finally:
            response.release()

    def error_from_response(self, status: int, body: bytes, headers: dict[str, str],
                            deployment: Deployment) -> UpstreamError:
        error_type = None
        try:
            data = orjson.loads(body)
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                error_type = data["error"].get("type")
        except orjson.JSONDecodeError:
            pass
        message = error_message(body) or f"upstream returned HTTP {status}"
        return UpstreamError(error_kind(error_type, status, message), f"{deployment.id}: {message}",
                             upstream_status=status, retry_after=retry_after(headers))


def stream_error(err: Any, deployment: Deployment) -> UpstreamError:
    """An `error` event inside a stream that had started with 200 (e.g. overloaded_error)."""
    err = err if isinstance(err, dict) else {"message": str(err)}
    message = str(err.get("message") or "upstream stream error")
    return UpstreamError(error_kind(err.get("type"), 0, message), f"{deployment.id}: {message}")
