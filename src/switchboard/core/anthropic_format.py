"""Anthropic's Messages format, for the ingress: Messages request -> canonical, canonical answer -> Messages.

The `/v1/messages` ingress lets Anthropic-speaking clients (the Claude SDKs,
coding agents) reach any configured model. It translates the Messages request
into the canonical OpenAI chat body, lets the ordinary pipeline serve it, and
translates the `chat.completion` (or the stream of chunks) back into a Message
(or Anthropic's stream events). The tables shared with the Anthropic provider
adapter (stop reasons, error types) live here too, so both directions agree.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from switchboard.core.request import MAX_STOP_LENGTH
from switchboard.errors import InvalidRequest
from switchboard.providers.reasoning import CLAUDE_EFFORTS, canonical_block

log = logging.getLogger(__name__)

# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_FOR_STOP: dict[str, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}
# OpenAI finish_reason -> Anthropic stop_reason.
STOP_FOR_FINISH: dict[str, str] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic error type for the HTTP status a client sees.
_ERROR_TYPE_FOR_STATUS: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}

_MESSAGE_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
                             "top_p", "tools", "tool_choice", "metadata", "output_config", "cache_control", "thinking"})
#: Anthropic documents no limit on `stop_sequences`; the gateway takes this many, whichever model serves them
#: (those beyond an upstream's own limit are applied by the gateway: `providers.local_stops`).
MAX_STOP_SEQUENCES = 64
# Accepted so that current SDKs and agents work, but with no canonical equivalent: they are dropped.
_IGNORED_FIELDS = frozenset({"top_k", "service_tier", "container", "context_management",
                             "diagnostics", "inference_geo", "mcp_servers", "speed", "user_profile_id", "workspace_id"})


def error_type_for_status(status: int) -> str:
    if status in _ERROR_TYPE_FOR_STATUS:
        return _ERROR_TYPE_FOR_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_payload(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": error_type_for_status(status), "message": message}}


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


# ---------------------------------------------------------------- request: Messages -> canonical


def _cache(block: dict[str, Any], param: str) -> dict[str, Any]:
    """A block's prompt-cache breakpoint as the canonical part's `cache_control` key (empty when none)."""
    cc = block.get("cache_control")
    if cc is None:
        return {}
    if not isinstance(cc, dict) or cc.get("type") != "ephemeral" or cc.get("ttl", "5m") not in ("5m", "1h"):
        raise _bad(f"{param}.cache_control", "must be {\"type\": \"ephemeral\"} with an optional ttl of '5m' or '1h'")
    return {"cache_control": cc}


def _system(system: Any) -> str | list[dict[str, Any]]:
    """The system prompt: one string, or text parts when a block carries a cache breakpoint."""
    text = _text_of_blocks(system, "system")
    if isinstance(system, list) and any(isinstance(b, dict) and "cache_control" in b for b in system):
        return [{"type": "text", "text": b["text"], **_cache(b, f"system.{i}")}
                for i, b in enumerate(system) if b["text"]]
    return text


def _text_of_blocks(blocks: Any, param: str) -> str:
    """The text of a `system` prompt or a tool_result content: a string or text blocks."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise _bad(param, "must be a string or an array of text blocks")
    return "\n".join(_text_block(block, f"{param}.{i}") for i, block in enumerate(blocks))


def _text_block(block: Any, param: str) -> str:
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise _bad(param, "must be a text block ({\"type\": \"text\", \"text\": ...})")
    return block["text"]


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{param}.source", "Field required")
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str) or not data:
            raise _bad(f"{param}.source", "a base64 image needs 'media_type' and 'data'")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise _bad(f"{param}.source.url", "Field required")
        return {"type": "image_url", "image_url": {"url": url}}
    raise _bad(f"{param}.source.type", f"must be 'base64' or 'url', got {kind!r}")


def _document_parts(block: dict[str, Any], param: str) -> list[dict[str, Any]]:
    """A document block as canonical parts: a PDF as a `file` part, a text or content document as its text
    (and images), which every provider reads; the title and context lead the text."""
    citations = block.get("citations")
    if isinstance(citations, dict) and citations.get("enabled"):
        raise _bad(f"{param}.citations", "citations are not supported by this gateway")
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{param}.source", "Field required")
    title, context = block.get("title"), block.get("context")
    for name, value in (("title", title), ("context", context)):
        if value is not None and not isinstance(value, str):
            raise _bad(f"{param}.{name}", "must be a string")
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if media != "application/pdf":
            raise _bad(f"{param}.source.media_type", f"must be 'application/pdf', got {media!r}")
        if not isinstance(data, str) or not data:
            raise _bad(f"{param}.source.data", "Field required")
        spec = {"file_data": f"data:application/pdf;base64,{data}", **({"filename": title} if title else {})}
        return [{"type": "file", "file": spec}]
    lead = "\n\n".join(x for x in (title, context) if x)
    if kind == "text":
        if source.get("media_type", "text/plain") != "text/plain" or not isinstance(source.get("data"), str):
            raise _bad(f"{param}.source", "a text document needs media_type 'text/plain' and 'data'")
        text = f"{lead}\n\n{source['data']}" if lead else source["data"]
        return [{"type": "text", "text": text}]
    if kind == "content":
        items = source.get("content")
        if isinstance(items, str):
            items = [{"type": "text", "text": items}]
        if not isinstance(items, list) or not items:
            raise _bad(f"{param}.source.content", "must be a string or a non-empty array of text and image blocks")
        parts = [{"type": "text", "text": lead}] if lead else []
        for j, item in enumerate(items):
            where = f"{param}.source.content.{j}"
            if isinstance(item, dict) and item.get("type") == "image":
                parts.append(_image_part(item, where))
            else:
                parts.append({"type": "text", "text": _text_block(item, where)})
        return parts
    if kind in ("url", "file"):
        raise _bad(f"{param}.source.type", f"{kind} documents are not supported by this gateway; send the PDF as "
                                           "base64 ({\"type\": \"base64\", \"media_type\": \"application/pdf\"})")
    raise _bad(f"{param}.source.type", f"must be 'base64', 'text' or 'content', got {kind!r}")


def _tool_arguments(value: Any) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def _user_turn(content: Any, param: str) -> list[dict[str, Any]]:
    """One Anthropic user turn as canonical messages: tool results first (as `tool` messages), then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list) or not content:
        raise _bad(param, "must be a string or a non-empty array of content blocks")
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        p = f"{param}.{i}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise _bad(f"{p}.text", "Field required")
            parts.append({"type": "text", "text": block["text"], **_cache(block, p)})
        elif kind == "image":
            parts.append({**_image_part(block, p), **_cache(block, p)})
        elif kind == "tool_result":
            tool_use_id = block.get("tool_use_id")
            if not isinstance(tool_use_id, str) or not tool_use_id:
                raise _bad(f"{p}.tool_use_id", "Field required")
            result = block.get("content", "")
            images: list[dict[str, Any]] = []
            if isinstance(result, list):
                texts = []
                for j, item in enumerate(result):
                    if isinstance(item, dict) and item.get("type") == "image":
                        images.append(_image_part(item, f"{p}.content.{j}"))
                    elif isinstance(item, dict) and item.get("type") == "document":
                        images.extend(_document_parts(item, f"{p}.content.{j}"))
                    else:
                        texts.append(_text_block(item, f"{p}.content.{j}"))
                result = "\n".join(texts)
            elif not isinstance(result, str):
                raise _bad(f"{p}.content", "must be a string or an array of content blocks")
            if block.get("is_error"):
                result = f"Error: {result}" if result else "Error"
            cache = _cache(block, p)
            tool_messages.append({"role": "tool", "tool_call_id": tool_use_id,
                                  "content": [{"type": "text", "text": result, **cache}] if cache else result})
            parts.extend(images)  # OpenAI tool messages hold text only: images and files follow in the user turn
        elif kind == "document":
            document = _document_parts(block, p)
            document[-1] = {**document[-1], **_cache(block, p)}  # the breakpoint ends the document
            parts.extend(document)
        else:
            raise _bad(f"{p}.type", f"unsupported content block type {kind!r} in a user message")
    out = tool_messages
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(content: Any, param: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(param, "must be a string or an array of content blocks")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        p = f"{param}.{i}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise _bad(f"{p}.text", "Field required")
            texts.append(block["text"])
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(p, "a tool_use block needs 'id' and 'name'")
            if block.get("input") is not None and not isinstance(block["input"], dict):
                raise _bad(f"{p}.input", "must be an object (the tool's arguments)")
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"], "arguments": _tool_arguments(block.get("input"))}})
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(canonical_block(block))  # type: ignore[arg-type]  # Claude needs them back, signed
        else:
            raise _bad(f"{p}.type", f"unsupported content block type {kind!r} in an assistant message")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools", "must be an array")
    out = []
    for i, tool in enumerate(tools):
        p = f"tools.{i}"
        if not isinstance(tool, dict):
            raise _bad(p, "must be an object")
        if tool.get("type") not in (None, "custom"):
            raise _bad(f"{p}.type", f"server tool {tool.get('type')!r} is not supported by this gateway; "
                                    "define client tools with name, description and input_schema")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{p}.name", "Field required")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(f"{p}.input_schema", "Field required")
        fn: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn, **_cache(tool, p)})
    return out


def _tool_choice(choice: Any, canonical: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        raise _bad("tool_choice", "must be an object such as {\"type\": \"auto\"}")
    kind = choice.get("type")
    if kind == "auto":
        canonical["tool_choice"] = "auto"
    elif kind == "any":
        canonical["tool_choice"] = "required"
    elif kind == "none":
        canonical["tool_choice"] = "none"
    elif kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise _bad("tool_choice.name", "Field required")
        canonical["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _bad("tool_choice.type", f"must be one of 'auto', 'any', 'tool', 'none', got {kind!r}")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        canonical["parallel_tool_calls"] = False


def _output_format(config: Any, canonical: dict[str, Any]) -> None:
    """Structured outputs (`output_config.format`) become the canonical JSON-schema response_format; the effort
    (`output_config.effort`) is kept as the canonical `effort`."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise _bad("output_config", "must be an object")
    effort = config.get("effort")
    if effort is not None:
        if effort not in CLAUDE_EFFORTS:
            raise _bad("output_config.effort", f"must be one of {', '.join(map(repr, CLAUDE_EFFORTS))}")
        canonical["effort"] = effort
    fmt = config.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise _bad("output_config.format", "must be {\"type\": \"json_schema\", \"schema\": {...}}")
    canonical["response_format"] = {"type": "json_schema",
                                    "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}


def _cache_last_block(messages: list[dict[str, Any]], cache: dict[str, Any]) -> None:
    """Automatic caching (a top-level `cache_control`): the breakpoint goes on the last block of the prompt."""
    last = messages[-1]
    content = last.get("content")
    if isinstance(content, str):
        last["content"] = [{"type": "text", "text": content, **cache}] if content else content
    elif isinstance(content, list) and content:
        content[-1] = {**content[-1], **cache}


def _thinking(thinking: Any, max_tokens: int, canonical: dict[str, Any]) -> None:
    """Extended thinking, kept for a Claude upstream (others leave it out; see providers/reasoning.py)."""
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        raise _bad("thinking.type",
                   "Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'")
    budget = thinking.get("budget_tokens")
    if thinking["type"] == "enabled":
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
            raise _bad("thinking.enabled.budget_tokens", "Input should be greater than or equal to 1024")
        if budget >= max_tokens:
            raise _bad("max_tokens", "`max_tokens` must be greater than `thinking.budget_tokens`")
    canonical["thinking"] = thinking


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi):
        raise _bad(name, f"must be a number between {lo:g} and {hi:g}")


def to_canonical(body: Any) -> dict[str, Any]:
    """Translate a Messages API request body into the canonical (OpenAI chat) body.

    Errors name Anthropic's parameters (``messages.1.content.0.source``), the
    way the Messages API itself reports them.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    unknown = sorted(set(body) - _MESSAGE_FIELDS - _IGNORED_FIELDS)
    if unknown:
        raise _bad(unknown[0], "Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "Field required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad("max_tokens", "Field required: an integer of at least 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "Field required: a non-empty array of messages")
    canonical: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        content = _system(system)
        if content:
            out.append({"role": "system", "content": content})
    for i, msg in enumerate(messages):
        p = f"messages.{i}"
        if not isinstance(msg, dict):
            raise _bad(p, "must be an object")
        role = msg.get("role")
        if role == "user":
            out.extend(_user_turn(msg.get("content"), f"{p}.content"))
        elif role == "assistant":
            out.append(_assistant_turn(msg.get("content"), f"{p}.content"))
        elif role == "system":
            raise _bad(f"{p}.role", "Unexpected role \"system\". The Messages API accepts a top-level `system` "
                                    "parameter, not \"system\" as an input message role.")
        else:
            raise _bad(f"{p}.role", f"must be 'user' or 'assistant', got {role!r}")
    if body.get("cache_control") is not None:
        _cache_last_block(out, _cache(body, ""))
    canonical["messages"] = out
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences", "must be an array of strings")
        if len(stops) > MAX_STOP_SEQUENCES:
            raise _bad("stop_sequences", f"this gateway accepts at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(len(s) > MAX_STOP_LENGTH for s in stops):
            raise _bad("stop_sequences", f"a stop sequence may be at most {MAX_STOP_LENGTH} characters long")
        if stops:
            canonical["stop"] = stops
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            canonical[name] = body[name]
    if body.get("tools") is not None:
        tools = _tools(body["tools"])
        if tools:
            canonical["tools"] = tools
    if body.get("tool_choice") is not None:  # checked without tools too; it only means something with them
        _tool_choice(body["tool_choice"], canonical if canonical.get("tools") else {})
    top_k = body.get("top_k")  # no OpenAI equivalent: checked, then left out
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise _bad("top_k", "must be a non-negative integer")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("metadata", "must be an object")
        user_id = metadata.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise _bad("metadata.user_id", "must be a string")
        if user_id:
            canonical["user"] = user_id
    _output_format(body.get("output_config"), canonical)
    _thinking(body.get("thinking"), max_tokens, canonical)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "must be a boolean")
    if stream:
        canonical["stream"] = True
        canonical["stream_options"] = {"include_usage": True}
    return canonical


# ---------------------------------------------------------------- response: canonical -> Message


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def _derived_id(prefix: str, seed: object) -> str:
    """An id that is the same every time the same completion is converted (an idempotent replay)."""
    return prefix + hashlib.sha256(str(seed).encode()).hexdigest()[:24]


def _tool_input(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def anthropic_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage -> Anthropic usage: `input_tokens` excludes what was read from or written to the cache;
    `cache_creation` splits the writes by TTL."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else 0
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached, written, hour = (v if isinstance(v, int) else 0 for v in (
        details.get("cached_tokens"), details.get("cache_write_tokens"), details.get("cache_write_1h_tokens")))
    hour = min(hour, written)
    completion = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else 0
    return {"input_tokens": max(0, prompt - cached - written), "output_tokens": completion,
            "cache_creation_input_tokens": written, "cache_read_input_tokens": cached,
            "cache_creation": {"ephemeral_5m_input_tokens": written - hour, "ephemeral_1h_input_tokens": hour}}


def _thinking_content(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's thinking blocks (signed, from Claude), or its reasoning text as one unsigned block
    (OpenAI-compatible reasoning models such as DeepSeek's)."""
    blocks = [c for b in message.get("thinking_blocks") or () if isinstance(b, dict) and (c := canonical_block(b))]
    if not blocks and isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        blocks = [{"type": "thinking", "thinking": message["reasoning_content"], "signature": ""}]
    return blocks


def to_message(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """A canonical `chat.completion` as an Anthropic Message."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    source_id = completion.get("id") if isinstance(completion.get("id"), str) and completion.get("id") else None
    content = _thinking_content(message)
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "text", "text": message["refusal"]})
    for index, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        fallback = _derived_id("toolu_", (source_id, index)) if source_id else "toolu_" + uuid.uuid4().hex[:24]
        content.append({"type": "tool_use", "id": call.get("id") or fallback,
                        "name": fn.get("name", ""), "input": _tool_input(fn.get("arguments"))})
    stop_reason, stop_sequence = _stop(choice.get("finish_reason"), choice.get("stop_sequence"),
                                       bool(message.get("tool_calls")))
    message_id = _derived_id("msg_", source_id) if source_id else new_message_id()
    return {"id": message_id, "type": "message", "role": "assistant", "model": completion.get("model") or model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": anthropic_usage(completion.get("usage"))}


def _stop(finish: Any, stop_sequence: Any, called_tools: bool) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for a canonical finish. Which stop sequence ended the answer is
    known only where the upstream says (a choice's `stop_sequence`, from Claude); OpenAI's `stop` says nothing."""
    stop_reason = STOP_FOR_FINISH.get(finish or "stop", "end_turn")
    if stop_reason == "end_turn":
        if called_tools:
            return "tool_use", None
        if isinstance(stop_sequence, str):
            return "stop_sequence", stop_sequence
    return stop_reason, None


# ---------------------------------------------------------------- stream: chunks -> events


def sse(event: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


@dataclass
class _ToolCall:
    """A streamed tool call: the tool_use block that starts it and its arguments so far."""

    block: dict[str, Any]
    arguments: str = ""
    # Whether the arguments go out as they come. Only an object does, since Anthropic's input is one; their first
    # non-blank character decides (None until it comes). Other arguments are sent whole when the block ends.
    streams: bool | None = None

    def add(self, arguments: str) -> str:
        """Adds a piece of the arguments; returns what may be streamed now ("" while they are held)."""
        self.arguments += arguments
        if self.streams is None:
            first = self.arguments.lstrip()[:1]
            if not first:
                return ""
            self.streams = first == "{"
            return self.arguments if self.streams else ""
        return arguments if self.streams else ""

    def is_whole_object(self) -> bool:
        """Whether the arguments are a complete JSON object, so that nothing but blanks can follow."""
        if not self.streams:
            return False
        try:
            return isinstance(orjson.loads(self.arguments), dict)
        except orjson.JSONDecodeError:
            return False

    def whole_input(self) -> str:
        """The input in one piece: the object the non-streamed answer has for these arguments (`_tool_input`)."""
        return orjson.dumps(_tool_input(self.arguments)).decode()


class EventWriter:
    """Turns canonical chunks into Anthropic stream events, one chunk at a time.

    Content blocks are opened lazily (a text block when text arrives, a
    tool_use block per tool call) and closed when another begins; the
    stop reason and final usage go out in `message_delta` at the end, since
    OpenAI streams report usage after the finish chunk.

    Anthropic sends one block at a time (start, deltas, stop), but an OpenAI
    stream may interleave the arguments of parallel tool calls. The open
    call streams; a call that begins while the open call's arguments are not
    yet a whole object is held, and the held calls go out whole, in index
    order, when the open block is closed (by text, thinking or the end).
    """

    def __init__(self, model: str, input_tokens_estimate: int) -> None:
        self.model = model
        self.input_estimate = input_tokens_estimate
        self.started = False
        self.block = -1  # index of the last content block started, -1 if none
        self.block_kind: str | None = None  # the open block's type, None if none is open
        self.calls: dict[int, _ToolCall] = {}  # every tool call, by its OpenAI tool_call index
        self.open_call: _ToolCall | None = None  # the call whose block is open
        self.held_calls: dict[int, _ToolCall] = {}  # calls waiting for the open call's block to close
        self.finish: str | None = None
        self.stop_sequence: str | None = None
        self.usage: dict[str, int] | None = None

    def start(self, model: str | None = None, source_id: object = None) -> bytes:
        self.started = True
        # Derived from the upstream id, like to_message's, so an idempotent replay has the same message id.
        message_id = _derived_id("msg_", source_id) if isinstance(source_id, str) and source_id else new_message_id()
        message = {"id": message_id, "type": "message", "role": "assistant", "model": model or self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self.input_estimate, "output_tokens": 1,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
        return sse("message_start", {"type": "message_start", "message": message})

    def _start_block(self, kind: str, block: dict[str, Any]) -> bytes:
        self.block += 1
        self.block_kind = kind
        return sse("content_block_start", {"type": "content_block_start", "index": self.block,
                                           "content_block": block})

    def _stop_block(self) -> bytes:
        out = b""
        if self.open_call is not None and not self.open_call.streams:
            out += self._input_delta(self.open_call.whole_input())
        self.block_kind, self.open_call = None, None
        return out + sse("content_block_stop", {"type": "content_block_stop", "index": self.block})

    def _close(self) -> bytes:
        """Stops the open block, then sends the held tool calls in index order, each as a whole block."""
        out = self._stop_block() if self.block_kind is not None else b""
        for index in sorted(self.held_calls):
            call = self.held_calls[index]
            out += self._start_block("tool_use", call.block) + self._input_delta(call.whole_input())
            out += self._stop_block()
        self.held_calls.clear()
        return out

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        return self._close() + self._start_block(kind, block)

    def _input_delta(self, partial_json: str) -> bytes:
        return sse("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                           "delta": {"type": "input_json_delta", "partial_json": partial_json}})

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self.start(chunk.get("model"), chunk.get("id"))
        if isinstance(chunk.get("usage"), dict):
            # a message_delta's usage has the totals only (no `cache_creation`), as Anthropic's does
            self.usage = {k: v for k, v in anthropic_usage(chunk["usage"]).items() if k != "cache_creation"}
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            out += self._thinking_delta(delta)
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                if self.block_kind != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out += sse("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                                   "delta": {"type": "text_delta", "text": text}})
            for call in delta.get("tool_calls") or ():
                out += self._tool_delta(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                self.stop_sequence = choice.get("stop_sequence")
        return out

    def _thinking_delta(self, delta: dict[str, Any]) -> bytes:
        """Reasoning text into a thinking block; a finished signed block closes it with its signature."""
        out = b""
        thought = delta.get("reasoning_content")
        if isinstance(thought, str) and thought:
            if self.block_kind != "thinking":
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += sse("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                               "delta": {"type": "thinking_delta", "thinking": thought}})
        for block in delta.get("thinking_blocks") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "redacted_thinking":
                out += self._open("redacted_thinking", {"type": "redacted_thinking", "data": block.get("data", "")})
                out += self._close()
            elif block.get("type") == "thinking" and block.get("signature"):
                if self.block_kind != "thinking":  # the text came whole, in the block itself
                    out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                    if block.get("thinking"):
                        out += sse("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                                           "delta": {"type": "thinking_delta",
                                                                     "thinking": block["thinking"]}})
                out += sse("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                                   "delta": {"type": "signature_delta",
                                                             "signature": block["signature"]}})
                out += self._close()
        return out

    def _tool_delta(self, delta: dict[str, Any]) -> bytes:
        index = delta.get("index", 0)
        fn = delta.get("function") or {}
        arguments = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        out = b""
        call = self.calls.get(index)
        if call is None:
            call_id = delta.get("id") or "toolu_" + uuid.uuid4().hex[:24]
            call = self.calls[index] = _ToolCall({"type": "tool_use", "id": call_id, "name": fn.get("name", ""),
                                                  "input": {}})
            if self._may_open_next_call():
                out += self._open("tool_use", call.block)
                self.open_call = call
            else:
                self.held_calls[index] = call
        if call is self.open_call:
            streamed = call.add(arguments)
            if streamed:
                out += self._input_delta(streamed)
            return out
        if index in self.held_calls:
            call.add(arguments)
        elif arguments.strip():  # the block ended (its object was whole, or text came): nowhere left to send it
            log.warning("tool call %s: arguments that came after its block ended are dropped", index)
        return out

    def _may_open_next_call(self) -> bool:
        """Whether a new tool call may take the next block now: not while calls are held (they come first), nor
        while the open call's arguments may still grow (an upstream that interleaves parallel calls)."""
        if self.held_calls:
            return False
        return self.open_call is None or self.open_call.is_whole_object()

    def finish_events(self) -> bytes:
        out = (b"" if self.started else self.start()) + self._close()
        stop, stop_sequence = _stop(self.finish, self.stop_sequence, bool(self.calls))
        usage = self.usage or {"input_tokens": self.input_estimate, "output_tokens": 0}
        out += sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": stop, "stop_sequence": stop_sequence},
                                     "usage": usage})
        return out + sse("message_stop", {"type": "message_stop"})


async def to_events(chunks: AsyncIterator[dict[str, Any]], writer: EventWriter) -> AsyncIterator[bytes]:
    """The whole translated stream (without error handling, which the ingress adds)."""
    async for chunk in chunks:
        data = writer.feed(chunk)
        if data:
            yield data
    yield writer.finish_events()
