"""Reading the canonical (OpenAI) request and writing canonical answers, for adapters of other formats.

Gemini, Bedrock and Ollama each translate the same things: the text of a
message, a tool call's JSON arguments, the images of a conversation, the
sampling parameters, and back again into `chat.completion` dicts and
`chat.completion.chunk` dicts. Doing it once here keeps every adapter about
its own wire format, and keeps the canonical side identical across them.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import orjson

from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import InvalidRequest
from switchboard.http.client import HttpClient

# Above this size base64 work moves off the event loop.
_INLINE_ENCODE_LIMIT = 256 * 1024


def unsupported(provider: str, param: str, message: str) -> InvalidRequest:
    """The client asked for something this provider cannot do: a 400, never a fallback."""
    return InvalidRequest(f"{message} (provider {provider!r} does not support it)", param=param,
                          code="unsupported_parameter")


# ------------------------------------------------------------------ reading the request


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a part list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def embeddings_as_base64(response: dict[str, Any]) -> dict[str, Any]:
    """An embeddings answer whose vectors are lists of floats, with each one as OpenAI encodes it for
    `encoding_format: "base64"` (little-endian float32); vectors already encoded are left as they are."""
    import base64

    import numpy as np

    data = response.get("data")
    if not isinstance(data, list) or not any(isinstance(d, dict) and isinstance(d.get("embedding"), list)
                                             for d in data):
        return response
    encoded = [{**d, "embedding": base64.b64encode(np.asarray(d["embedding"], dtype="<f4").tobytes()).decode()}
               if isinstance(d, dict) and isinstance(d.get("embedding"), list) else d for d in data]
    return {**response, "data": encoded}


def tool_arguments(call: dict[str, Any], param: str) -> dict[str, Any]:
    """A tool call's `arguments` JSON string as an object, as every provider but OpenAI's wants them; a 400 naming
    the parameter for anything else (a function's arguments are always an object)."""
    raw = (call.get("function") or {}).get("arguments")
    if raw is None or raw == "":
        return {}
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}.function.arguments' must be a JSON object.",
                             param=f"{param}.function.arguments")
    return value


def tool_result_value(content: Any) -> Any:
    """A tool message's content as a value: parsed JSON when it is JSON, the text otherwise."""
    text = content_text(content)
    if text[:1] in ("{", "["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return text


def tool_names_by_id(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Tool call id -> function name, so tool results can name the function (Gemini, Ollama need it)."""
    names: dict[str, str] = {}
    for msg in messages:
        for call in msg.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                names[call["id"]] = str((call.get("function") or {}).get("name", ""))
    return names


def stop_sequences(body: dict[str, Any]) -> list[str]:
    """The request's stop sequences; an empty string stops nothing (as OpenAI and Claude treat it), so it is
    left out: Bedrock refuses a sequence of length 0, and Ollama would match it at once."""
    stop = body.get("stop")
    if stop is None:
        return []
    return [s for s in ([stop] if isinstance(stop, str) else stop) if s != ""]


def max_tokens(body: dict[str, Any]) -> int | None:
    return body.get("max_completion_tokens") or body.get("max_tokens")


def response_format(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str | None]:
    """(kind, schema, name) of `response_format`: kind is text, json_object or json_schema."""
    fmt = body.get("response_format") or {}
    kind = fmt.get("type", "text")
    if kind != "json_schema":
        return kind, None, None
    spec = fmt.get("json_schema") or {}
    schema = spec.get("schema")
    return kind, schema if isinstance(schema, dict) else {"type": "object"}, spec.get("name")


def tool_choice(body: dict[str, Any]) -> tuple[str, str | None]:
    """(mode, forced function name): mode is auto, none, required or function."""
    choice = body.get("tool_choice")
    if choice is None:
        return "auto", None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return "function", name
        raise InvalidRequest("'tool_choice' must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}.",
                             param="tool_choice")
    return str(choice), None


# OpenAI-only features with no translation: refused by the other adapters rather than silently dropped.
_OPENAI_ONLY = {"functions": "legacy 'functions' (send them as 'tools')",
                "function_call": "legacy 'function_call' (send 'tool_choice')",
                "audio": "audio output", "web_search_options": "web search", "prediction": "predicted outputs"}


def openai_only(provider: str, body: dict[str, Any]) -> None:
    """A 400 for what only OpenAI's own API serves: legacy function calling (and its history), audio output,
    web search and predicted outputs; the answer would silently lack them elsewhere."""
    for key, what in _OPENAI_ONLY.items():
        if body.get(key) is not None:
            raise unsupported(provider, key, what)
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise unsupported(provider, "modalities", "output modalities other than text")
    for i, msg in enumerate(body["messages"]):
        if msg.get("role") == "function" or msg.get("function_call") is not None:
            param = f"messages[{i}].role" if msg.get("role") == "function" else f"messages[{i}].function_call"
            raise unsupported(provider, param, "legacy function-call messages (send 'tool_calls' and role 'tool')")


def single_choice(provider: str, body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise unsupported(provider, "n", "'n' must be 1")


def no_logprobs(provider: str, body: dict[str, Any]) -> None:
    """A 400 for `logprobs` where the provider returns none: an answer without them would look like one with."""
    if body.get("logprobs") or body.get("top_logprobs"):
        raise unsupported(provider, "logprobs", "'logprobs'")


# ------------------------------------------------------------------ images


class Image:
    """An image from the request, as the mime type and base64 text providers inline."""

    __slots__ = ("mime", "b64", "raw")

    def __init__(self, mime: str, b64: str, raw: bytes) -> None:
        self.mime = mime
        self.b64 = b64
        self.raw = raw


def image_urls(request: ChatRequest) -> list[tuple[str, str]]:
    """(url, param path) of every image part, in order."""
    found: list[tuple[str, str]] = []
    for i, msg in enumerate(request.body["messages"]):
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image_url":
                found.append((part["image_url"]["url"], f"messages[{i}].content[{j}].image_url.url"))
    return found


async def load_images(request: ChatRequest, deployment: Deployment, client: HttpClient) -> dict[str, Image]:
    """Every image of the request, fetched concurrently, keyed by its URL.

    data: URLs are checked and reused as they are (their base64 is what the
    providers want); https URLs go through the SSRF-safe loader.
    """
    urls = image_urls(request)
    if not urls:
        return {}
    from switchboard.providers.images import load_image

    allow_private = bool(deployment.options.get("allow_private_image_urls"))
    unique: dict[str, str] = {}
    for url, param in urls:
        unique.setdefault(url, param)
    loaded = await asyncio.gather(*(load_image(url, client, allow_private=allow_private, param=param)
                                    for url, param in unique.items()))
    images: dict[str, Image] = {}
    for (url, _), (mime, raw) in zip(unique.items(), loaded):
        if url[:5].lower() == "data:":
            b64 = "".join(url.partition(",")[2].split())
        elif len(raw) > _INLINE_ENCODE_LIMIT:
            b64 = await asyncio.to_thread(lambda r=raw: base64.b64encode(r).decode("ascii"))
        else:
            b64 = base64.b64encode(raw).decode("ascii")
        images[url] = Image(mime, b64, raw)
    return images


# ------------------------------------------------------------------ writing the answer


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def usage(prompt: int, completion: int, *, cached: int | None = None, cache_write: int | None = None,
          cache_write_1h: int | None = None, reasoning: int | None = None) -> dict[str, Any]:
    """OpenAI usage; prompt cache reads and writes (and the writes kept an hour) as parts of the prompt tokens."""
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
        if cache_write is not None:
            out["prompt_tokens_details"]["cache_write_tokens"] = cache_write
            if cache_write_1h is not None:
                out["prompt_tokens_details"]["cache_write_1h_tokens"] = cache_write_1h
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def tool_call(call_id_: str, name: str, arguments: Any, extra_content: dict[str, Any] | None = None) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    call = {"id": call_id_, "type": "function", "function": {"name": name, "arguments": args}}
    if extra_content:
        call["extra_content"] = extra_content
    return call


def message(text: str | None, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text if (text or not tool_calls) else None, "refusal": None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def completion(cid: str, model: str, choices: list[tuple[dict[str, Any], str]], usage_: dict[str, Any] | None,
               created: int | None = None) -> dict[str, Any]:
    """A `chat.completion` from (message, finish_reason) pairs."""
    result: dict[str, Any] = {
        "id": cid, "object": "chat.completion", "created": created or int(time.time()), "model": model,
        "choices": [{"index": i, "message": msg, "logprobs": None, "finish_reason": finish}
                    for i, (msg, finish) in enumerate(choices)],
    }
    if usage_ is not None:
        result["usage"] = usage_
    return result


class ChunkWriter:
    """Builds the `chat.completion.chunk` dicts of one stream, all sharing id, created and model."""

    __slots__ = ("cid", "created", "model")

    def __init__(self, model: str, cid: str | None = None) -> None:
        self.cid = cid or completion_id()
        self.created = int(time.time())
        self.model = model

    def delta(self, delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
        return {"id": self.cid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def role(self, index: int = 0) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""}, index=index)

    def text(self, text: str, index: int = 0) -> dict[str, Any]:
        return self.delta({"content": text}, index=index)

    def tool_start(self, position: int, call_id_: str, name: str, arguments: str = "", index: int = 0,
                   extra_content: dict[str, Any] | None = None) -> dict[str, Any]:
        call = {"index": position, "id": call_id_, "type": "function",
                "function": {"name": name, "arguments": arguments}}
        if extra_content:
            call["extra_content"] = extra_content
        return self.delta({"tool_calls": [call]}, index=index)

    def tool_arguments(self, position: int, arguments: str, index: int = 0) -> dict[str, Any]:
        return self.delta({"tool_calls": [{"index": position, "function": {"arguments": arguments}}]}, index=index)

    def finish(self, reason: str, index: int = 0) -> dict[str, Any]:
        return self.delta({}, reason, index=index)

    def usage(self, usage_: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.cid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage_}
