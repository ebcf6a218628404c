"""OpenAI's Responses API format, for the ingress: Responses request -> canonical, canonical answer -> Response.

`POST /v1/responses` lets clients on `client.responses.create(...)` reach every
configured model: the request's `input` items (messages, function calls and
their outputs) and `instructions` become the canonical chat body, the ordinary
pipeline serves it, and the `chat.completion` (or its stream of chunks) comes
back as a Response object (or the Responses stream events).

Responses are stored unless the request says `"store": false` (see
storage/responses.py): `previous_response_id` continues a stored conversation,
its history going before the new `input`. Conversations objects, stored prompt
templates and background mode are refused with a clear error.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import uuid
from typing import Any

import orjson

from switchboard.errors import InvalidRequest

log = logging.getLogger(__name__)

_SEAL = "sbthink1:"  # prefix of the encrypted_content this gateway writes (Claude's thinking blocks)

_FIELDS = frozenset({"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools",
                     "tool_choice", "parallel_tool_calls", "text", "stream", "stream_options", "metadata", "user",
                     "safety_identifier", "store", "reasoning", "truncation", "include", "service_tier",
                     "top_logprobs", "prompt_cache_key", "prompt_cache_retention", "previous_response_id",
                     "conversation", "background", "prompt", "max_tool_calls"})
# Stateful features this gateway does not offer; each gets its own explanation.
_STATEFUL = {
    "conversation": "this gateway does not keep Conversation objects: use `previous_response_id`, or send the "
                    "whole conversation in `input`",
    "prompt": "stored prompt templates are not available through this gateway: send `instructions` and `input`",
    "background": "background mode is not available through this gateway: stream the response instead",
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': {message}", param=param)


def _derived_id(prefix: str, seed: object) -> str:
    """An id that is the same every time the same completion is converted (an idempotent replay)."""
    return prefix + hashlib.sha256(str(seed).encode()).hexdigest()[:32]


# ---------------------------------------------------------------- request: Responses -> canonical


def _input_parts(content: Any, param: str, role: str) -> str | list[dict[str, Any]]:
    """A message's content as canonical content: a string, or text and image parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(param, "expected a string or an array of content parts")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        p = f"{param}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            if not isinstance(part.get("text"), str):
                raise _bad(f"{p}.text", "expected a string")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and role == "assistant":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(f"{p}.image_url", "an image must be given as a URL or a data: URL (file ids are not "
                                             "available through this gateway)")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            parts.append(_file_part(part, p))
        elif kind == "input_audio":
            raise _bad(f"{p}.type", f"{kind} parts are not supported by this gateway")
        else:
            raise _bad(f"{p}.type", f"unsupported content part type {kind!r}")
    return parts


def _file_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    """An input_file as the canonical `file` part: inline data (a data: URL) or an OpenAI file id."""
    spec: dict[str, Any] = {}
    for key in ("file_data", "file_id", "filename"):
        value = part.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad(f"{param}.{key}", "expected a string")
        if value:
            spec[key] = value
    if part.get("file_url") is not None:
        raise _bad(f"{param}.file_url", "file URLs are not supported by this gateway; send the file as "
                                        "'file_data' (data:application/pdf;base64,...)")
    if "file_data" not in spec and "file_id" not in spec:
        raise _bad(param, "an input_file needs 'file_data' or 'file_id'")
    return {"type": "file", "file": spec}


def _text_of(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content if p["type"] == "text")


def _output_parts(output: Any, param: str) -> tuple[str, list[dict[str, Any]]]:
    """A function_call_output's output: its text, and its images (a chat tool message holds text only, so they
    follow in a user turn, as the Anthropic ingress does with a tool_result's images)."""
    if isinstance(output, str):
        return output, []
    if isinstance(output, list):
        parts = _input_parts(output, param, "tool")
        return _text_of([q for q in parts if q["type"] == "text"]), [q for q in parts if q["type"] != "text"]
    raise _bad(param, "expected a string or an array of content parts")


def _messages(items: Any, calls: set[str]) -> list[dict[str, Any]]:
    """`input` as canonical messages; function calls join the assistant message before them."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise _bad("input", "expected a string or a non-empty array of input items")
    out: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []  # sealed thinking blocks, for the assistant message of the next item
    tool_images: list[dict[str, Any]] = []  # images of function outputs, for the user turn after them
    for i, item in enumerate(items):
        p = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(p, "expected an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"{p}.role", f"expected one of 'user', 'assistant', 'system', 'developer', got {role!r}")
            content = _input_parts(item.get("content"), f"{p}.content", role)
            if role == "assistant":
                out.append({"role": "assistant", "content": _text_of(content)})
                _attach(thinking, out[-1])
            elif role in ("system", "developer"):
                out.append({"role": role, "content": _text_of(content)})
            else:
                out.append({"role": "user", "content": content})
        elif kind == "function_call":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise _bad(p, "a function_call item needs 'call_id' and 'name'")
            if not isinstance(arguments, str):
                raise _bad(f"{p}.arguments", "expected a string of JSON")
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            calls.add(call_id)
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if not last["content"]:
                    last["content"] = None
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
            _attach(thinking, out[-1])
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{p}.call_id", "expected a string")
            if call_id not in calls:  # every provider refuses a tool result without its call; OpenAI's words
                raise _bad(f"{p}.call_id", f"no function call found for function call output with call_id {call_id!r}")
            output, images = _output_parts(item.get("output"), f"{p}.output")
            out.append({"role": "tool", "tool_call_id": call_id, "content": output})
            tool_images.extend(images)
            following = items[i + 1] if i + 1 < len(items) else None
            if tool_images and not (isinstance(following, dict) and following.get("type") == "function_call_output"):
                out.append({"role": "user", "content": tool_images})  # after the turn's last tool message
                tool_images = []
        elif kind == "reasoning":
            blocks = unsealed(item.get("encrypted_content"))
            if blocks:  # Claude's signed thinking, sealed by this gateway; other reasoning items stay behind
                thinking.extend(blocks)
        else:
            raise _bad(f"{p}.type", f"input items of type {kind!r} are not supported by this gateway "
                                    "(messages, function_call and function_call_output are)")
    return out


def _attach(thinking: list[dict[str, Any]], message: dict[str, Any]) -> None:
    """Moves the thinking blocks of the reasoning items before an assistant item onto its message (an answer
    that thought again between tool calls has several reasoning items)."""
    if thinking:
        message.setdefault("thinking_blocks", []).extend(thinking)
        thinking.clear()


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools", "expected an array")
    out = []
    for i, tool in enumerate(tools):
        p = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(p, "expected an object")
        if tool.get("type") != "function":
            raise _bad(f"{p}.type", f"built-in tool {tool.get('type')!r} is not available through this gateway; "
                                    "define function tools")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{p}.name", "expected a non-empty string")
        fn: dict[str, Any] = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                fn[key] = tool[key]
        out.append({"type": "function", "function": fn})
    return out


def _check_settings(body: dict[str, Any]) -> None:
    """The parameters a Response echoes back: the SDK's Response model must still read them."""
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or len(metadata) > 16:
            raise _bad("metadata", "expected an object of at most 16 keys")
        for key, value in metadata.items():
            if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
                raise _bad(f"metadata.{key}", "expected a string of at most 512 characters, under a key of at most 64")
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):  # its effort is checked as reasoning_effort
        raise _bad("reasoning", "expected an object such as {\"effort\": \"low\"}")
    if body.get("truncation") not in (None, "auto", "disabled"):
        raise _bad("truncation", "expected 'auto' or 'disabled'")
    for name in ("user", "safety_identifier"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise _bad(name, "expected a string")
    if body.get("parallel_tool_calls") is not None and not isinstance(body["parallel_tool_calls"], bool):
        raise _bad("parallel_tool_calls", "expected a boolean")


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice", "expected 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}")


def _text_format(text: Any) -> dict[str, Any] | None:
    """`text.format` as the canonical response_format (None for plain text)."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _bad("text", "expected an object")
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if not isinstance(fmt, dict):
        raise _bad("text.format", "expected an object")
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict) or not isinstance(fmt.get("name"), str):
            raise _bad("text.format", "a json_schema format needs 'name' and 'schema'")
        schema = {"name": fmt["name"], "schema": fmt["schema"]}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text.format.type", f"expected 'text', 'json_object' or 'json_schema', got {fmt.get('type')!r}")


# A chat-completions parameter, as the Responses API names it: errors from the canonical checks and the provider
# adapters name what the client sent.
_RESPONSES_PARAMS = [(re.compile(r"^response_format"), "text.format"),
                     (re.compile(r"^reasoning_effort"), "reasoning.effort"),
                     (re.compile(r"^max_(completion_)?tokens"), "max_output_tokens"),
                     (re.compile(r"^tools\[(\d+)\]\.function\."), r"tools[\1]."),
                     (re.compile(r"^messages\[\d+\][.\w\[\]]*"), "input")]


def in_responses_terms(exc: InvalidRequest) -> InvalidRequest:
    """`exc` naming the Responses API's parameter where it named the chat-completions one."""
    param = exc.param
    if not isinstance(param, str):
        return exc
    for pattern, replacement in _RESPONSES_PARAMS:
        renamed = pattern.sub(replacement, param, count=1)
        if renamed != param:
            exc.message = exc.message.replace(param, renamed)
            exc.args = (exc.message,)
            exc.param = renamed
            break
    return exc


def to_canonical(body: Any, history: list[dict[str, Any]] | None = None
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Translate a Responses API request body into the canonical (OpenAI chat) body, after the `history` of a
    previous response; also returns the messages this request adds (its turn, without the instructions)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest(f"Unknown parameter: '{unknown[0]}'.", param=unknown[0])
    for name, why in _STATEFUL.items():
        if body.get(name) not in (None, False):
            raise _bad(name, why)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if body.get("input") is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    calls = {c.get("id") for m in history or () if m.get("role") == "assistant" for c in m.get("tool_calls") or ()}
    turn = _messages(body["input"], calls)
    messages = [*(history or ()), *turn]
    instructions = body.get("instructions")  # a previous response's instructions are not carried over (as OpenAI)
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("instructions", "expected a string")
        if instructions:
            messages.insert(0, {"role": "system", "content": instructions})
    if not isinstance(body.get("store", True), bool):
        raise _bad("store", "expected a boolean")
    canonical: dict[str, Any] = {"model": model, "messages": messages}
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 16:
            raise _bad("max_output_tokens", "expected an integer of at least 16")
        canonical["max_tokens"] = limit
    for name, hi in (("temperature", 2), ("top_p", 1)):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= hi:
                raise _bad(name, f"expected a number between 0 and {hi}")
            canonical[name] = value
    choice = _tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else None  # checked always
    if (choice == "required" or isinstance(choice, dict)) and not body.get("tools"):
        raise _bad("tool_choice", "asks for a tool call, but 'tools' offers none")
    _check_settings(body)
    if body.get("tools"):
        canonical["tools"] = _tools(body["tools"])
        if choice is not None:
            canonical["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            canonical["parallel_tool_calls"] = body["parallel_tool_calls"]
    response_format = _text_format(body.get("text"))
    if response_format is not None:
        canonical["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        canonical["reasoning_effort"] = reasoning["effort"]
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        canonical["user"] = user
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "expected a boolean")
    if stream:
        canonical["stream"] = True
        canonical["stream_options"] = {"include_usage": True}
    return canonical, turn


def assistant_message(response: dict[str, Any]) -> dict[str, Any]:
    """A Response's output items as the canonical assistant message (what a follow-up's history holds)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking = None
    for item in response["output"]:
        if item["type"] == "reasoning":
            thinking = unsealed(item.get("encrypted_content"))
        elif item["type"] == "message":
            texts.extend(p.get("text") or p.get("refusal") or "" for p in item["content"])
        elif item["type"] == "function_call":
            calls.append({"id": item["call_id"], "type": "function",
                          "function": {"name": item["name"], "arguments": item["arguments"]}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def input_items(turns: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Stored turns (response id, canonical messages) as Responses input items, oldest first; each item's id
    derives from the Response whose turn holds it, so it is the same on every listing."""
    items: list[dict[str, Any]] = []
    for response_id, messages in turns:
        for j, msg in enumerate(messages):
            def item_id(prefix: str, k: int = 0) -> str:
                return _derived_id(prefix, (response_id, j, k))

            role, content = msg["role"], msg.get("content")
            if role == "tool":
                items.append({"type": "function_call_output", "id": item_id("fco_"), "call_id": msg["tool_call_id"],
                              "output": content if isinstance(content, str) else _text_of(content or []),
                              "status": "completed"})
                continue
            if role == "assistant":
                if content:
                    items.append(_message_item(item_id("msg_"), _text_of(content), "completed"))
                for k, call in enumerate(msg.get("tool_calls") or ()):
                    fn = call["function"]
                    items.append(_call_item(item_id("fc_", k), call["id"], fn["name"], fn["arguments"], "completed"))
                continue
            parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else [
                {"type": "input_text", "text": p["text"]} if p["type"] == "text" else
                {"type": "input_image", "image_url": p["image_url"]["url"],
                 "detail": p["image_url"].get("detail", "auto")} for p in content]
            items.append({"type": "message", "id": item_id("msg_"), "role": role, "content": parts,
                          "status": "completed"})
    return items


# ---------------------------------------------------------------- response: canonical -> Response


def usage_of(usage: Any) -> dict[str, Any] | None:
    """OpenAI chat usage -> Responses usage."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else 0
    completion = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else 0
    details = usage.get("prompt_tokens_details") or {}
    cached, written = details.get("cached_tokens") or 0, details.get("cache_write_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion}


class Shell:
    """The request's echoed settings, shared by the final Response and every stream event's snapshot."""

    def __init__(self, body: dict[str, Any], model: str, request_id: str = "") -> None:
        self.body = body
        self.model = model
        # The ids of the Response and its items derive from the upstream's id and the gateway's request id: the
        # same on an idempotent replay, never shared by two requests (some servers repeat ids: Ollama has 999).
        self.request_id = request_id

    def of_request(self, request_id: str) -> Shell:
        """The same settings, for the ids of another request (the first one, on an idempotent replay)."""
        return Shell(self.body, self.model, request_id)

    def response(self, response_id: str, created: float, status: str, output: list[dict[str, Any]],
                 usage: dict[str, Any] | None = None, finish: str | None = None,
                 error: dict[str, Any] | None = None, model: str | None = None) -> dict[str, Any]:
        b = self.body
        reason = _INCOMPLETE.get(finish or "") if status == "incomplete" else None
        return {
            "id": response_id, "object": "response", "created_at": created, "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error, "incomplete_details": {"reason": reason} if reason else None,
            "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
            "model": model or self.model, "output": output,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "reasoning": b.get("reasoning") or {"effort": None, "summary": None}, "store": b.get("store", True),
            "temperature": b.get("temperature", 1.0), "text": b.get("text") or {"format": {"type": "text"}},
            "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [], "top_p": b.get("top_p", 1.0),
            "truncation": b.get("truncation") or "disabled", "usage": usage, "user": b.get("user"),
            "metadata": b.get("metadata") or {},
        }


def _status(finish: str | None) -> str:
    return "incomplete" if finish in _INCOMPLETE else "completed"


def sealed(blocks: list[dict[str, Any]]) -> str:
    """Thinking blocks as a reasoning item's `encrypted_content`: opaque to the client, which sends it back."""
    return _SEAL + base64.b64encode(orjson.dumps(blocks)).decode()


def unsealed(value: Any) -> list[dict[str, Any]] | None:
    """The thinking blocks of an `encrypted_content` this gateway sealed (None for anything else)."""
    if not isinstance(value, str) or not value.startswith(_SEAL):
        return None
    try:
        blocks = orjson.loads(base64.b64decode(value[len(_SEAL):], validate=True))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return blocks if isinstance(blocks, list) else None


def _reasoning_item(item_id: str, summary: str, blocks: list[dict[str, Any]] | None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "reasoning", "id": item_id,
                            "summary": [{"type": "summary_text", "text": summary}] if summary else []}
    if blocks:
        item["encrypted_content"] = sealed(blocks)
    return item


def _message_item(item_id: str, text: str, status: str, refusal: bool = False) -> dict[str, Any]:
    part = ({"type": "refusal", "refusal": text} if refusal else
            {"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": [part]}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def to_response(completion: dict[str, Any], shell: Shell) -> dict[str, Any]:
    """A canonical `chat.completion` as a Response."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    source = completion.get("id") if isinstance(completion.get("id"), str) else None
    source = f"{source or uuid.uuid4().hex}/{shell.request_id}"
    finish = choice.get("finish_reason")
    status = _status(finish)
    output: list[dict[str, Any]] = []
    thought, blocks = message.get("reasoning_content"), message.get("thinking_blocks")
    if thought or blocks:
        output.append(_reasoning_item(_derived_id("rs_", (source, "reasoning")), thought or "", blocks))
    text, refusal = message.get("content"), message.get("refusal")
    if isinstance(text, str) and text:
        output.append(_message_item(_derived_id("msg_", (source, "message")), text, status))
    elif isinstance(refusal, str) and refusal:
        output.append(_message_item(_derived_id("msg_", (source, "message")), refusal, status, refusal=True))
    for index, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        call_id = call.get("id") or _derived_id("call_", (source, index))
        output.append(_call_item(_derived_id("fc_", (source, index)), call_id, fn.get("name", ""),
                                 fn.get("arguments") or "{}", "completed"))
    created = completion.get("created") if isinstance(completion.get("created"), int) else int(time.time())
    return shell.response(_derived_id("resp_", source), created, status, output, usage_of(completion.get("usage")),
                          finish, model=completion.get("model"))


# ---------------------------------------------------------------- stream: chunks -> events


def _is_complete_json(arguments: str) -> bool:
    """Whether function-call arguments are a complete JSON object or array, which nothing but blanks can extend
    (a number could still grow; other values are held until the end, to be safe)."""
    try:
        return isinstance(orjson.loads(arguments), (dict, list))
    except orjson.JSONDecodeError:
        return False


def sse(payload: dict[str, Any]) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class EventWriter:
    """Turns canonical chunks into Responses stream events, one chunk at a time.

    Output items stream one after the other, as OpenAI sends them: the message
    item opens when the first text arrives, a reasoning item on the first
    reasoning, a function_call item per tool call, and each item is done
    before the next one is added.

    An OpenAI-format upstream may interleave the arguments of parallel tool
    calls. The open function_call item streams; a call that begins while the
    open call's arguments are not yet complete JSON is held, and the held
    calls go out whole, in index order, once the open item is done (when
    another item begins, or at the end). The last item closes at the end
    (`finish_events`), once the finish reason and usage (which OpenAI streams
    send after the finish chunk) are known, followed by `last_event`:
    `response.completed` (or `response.incomplete`) with the whole Response,
    which the ingress may store in between. A stream that breaks off ends the
    same way: `failure_events`, then `last_event` with the failed Response.
    """

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.sequence = 0
        self.response_id = ""
        self.created = int(time.time())
        self.model: str | None = None
        self.source = ""
        self.items: list[dict[str, Any]] = []  # output items in order, as they will be when done
        self.closed = 0  # items[:closed] are done
        self.message: dict[str, Any] | None = None
        self.reasoning: dict[str, Any] | None = None
        self.thinking: list[dict[str, Any]] = []  # the open reasoning item's signed thinking blocks, sealed into it
        self.calls: dict[int, dict[str, Any]] = {}  # canonical tool call index -> its item
        self.held_calls: dict[int, dict[str, Any]] = {}  # calls waiting for the open item to be done, by index
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.final: dict[str, Any] = {}  # the whole Response, once finish_events has run

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(payload)

    def start(self, chunk: dict[str, Any] | None = None) -> bytes:
        source = (chunk or {}).get("id")
        # Derived from the upstream id, like to_response's, so an idempotent replay has the same ids.
        self.source = f"{source if isinstance(source, str) and source else uuid.uuid4().hex}/{self.shell.request_id}"
        self.response_id = _derived_id("resp_", self.source)
        self.model = (chunk or {}).get("model") or None
        if isinstance((chunk or {}).get("created"), int):
            self.created = chunk["created"]  # type: ignore[index]
        snapshot = self.shell.response(self.response_id, self.created, "in_progress", [], model=self.model)
        return (self._event("response.created", response=snapshot)
                + self._event("response.in_progress", response=snapshot))

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.response_id else self.start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thought = delta.get("reasoning_content")
            if isinstance(thought, str) and thought:
                out += self._reasoning(thought)
            if delta.get("thinking_blocks"):
                out += self._reasoning("")
                self.thinking.extend(b for b in delta["thinking_blocks"] if isinstance(b, dict))
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                out += self._text(text)
            for call in delta.get("tool_calls") or ():
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def _is_open(self, item: dict[str, Any] | None) -> bool:
        return item is not None and self.closed < len(self.items) and self.items[-1] is item

    def _add(self, item: dict[str, Any], shown: dict[str, Any]) -> bytes:
        """`item` as the next output item (the open one done and the held calls sent first), announced as `shown`."""
        return self._end_open_item("completed") + self._added(item, shown)

    def _added(self, item: dict[str, Any], shown: dict[str, Any]) -> bytes:
        self.items.append(item)
        return self._event("response.output_item.added", output_index=len(self.items) - 1, item=shown)

    def _end_open_item(self, status: str) -> bytes:
        """The done events of the open item, if any, then the held tool calls, each whole, in index order."""
        out = self._close(status) if self.closed < len(self.items) else b""
        for index in sorted(self.held_calls):
            item = self.held_calls[index]
            out += self._added(item, {**item, "arguments": ""})
            if item["arguments"]:
                out += self._arguments_delta(item, item["arguments"])
            out += self._close("completed")
        self.held_calls.clear()
        return out

    def _reasoning(self, text: str) -> bytes:
        """The open reasoning item (a new one unless the last item is one), its summary growing by `text`."""
        out = b""
        if not self._is_open(self.reasoning):
            self.reasoning = _reasoning_item(_derived_id("rs_", (self.source, "reasoning", len(self.items))), "", None)
            out += self._add(self.reasoning, dict(self.reasoning))
        reasoning = self.reasoning
        assert reasoning is not None
        if not text:
            return out
        index = len(self.items) - 1
        if not reasoning["summary"]:
            reasoning["summary"].append({"type": "summary_text", "text": ""})
            out += self._event("response.reasoning_summary_part.added", item_id=reasoning["id"],
                               output_index=index, summary_index=0, part={"type": "summary_text", "text": ""})
        reasoning["summary"][0]["text"] += text
        return out + self._event("response.reasoning_summary_text.delta", item_id=reasoning["id"],
                                 output_index=index, summary_index=0, delta=text)

    def _text(self, text: str) -> bytes:
        out = b""
        if not self._is_open(self.message):
            self.message = _message_item(_derived_id("msg_", (self.source, "message", len(self.items))), "",
                                         "in_progress")
            out += self._add(self.message, {**self.message, "content": []})
            out += self._event("response.content_part.added", item_id=self.message["id"],
                               output_index=len(self.items) - 1, content_index=0,
                               part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        message = self.message
        assert message is not None
        message["content"][0]["text"] += text
        return out + self._event("response.output_text.delta", item_id=message["id"],
                                 output_index=len(self.items) - 1, content_index=0, delta=text, logprobs=[])

    def _call(self, delta: dict[str, Any]) -> bytes:
        index = delta.get("index", 0)
        fn = delta.get("function") or {}
        arguments = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        out = b""
        item = self.calls.get(index)
        if item is None:
            item = self.calls[index] = _call_item(_derived_id("fc_", (self.source, index)),
                                                  delta.get("id") or _derived_id("call_", (self.source, index)),
                                                  fn.get("name", ""), "", "in_progress")
            if self._may_add_next_call():
                out += self._add(item, dict(item))
            else:
                self.held_calls[index] = item
        if not arguments:
            return out
        if self._is_open(item):
            item["arguments"] += arguments
            out += self._arguments_delta(item, arguments)
        elif index in self.held_calls:
            item["arguments"] += arguments
        elif arguments.strip():  # its item is done (its JSON was complete, or text came): nowhere left to send it
            log.warning("tool call %s: arguments that came after its output item was done are dropped", index)
        return out

    def _may_add_next_call(self) -> bool:
        """Whether a new tool call may be the next output item now: not while calls are held (they come first),
        nor while the open call's arguments may still grow (an upstream that interleaves parallel calls)."""
        if self.held_calls:
            return False
        open_item = self.items[-1] if self.closed < len(self.items) else None
        return open_item is None or open_item["type"] != "function_call" or _is_complete_json(open_item["arguments"])

    def _arguments_delta(self, item: dict[str, Any], delta: str) -> bytes:
        return self._event("response.function_call_arguments.delta", item_id=item["id"],
                           output_index=len(self.items) - 1, delta=delta)

    def _close(self, status: str) -> bytes:
        """The done events of the open (last) item."""
        index = len(self.items) - 1
        item = self.items[index]
        self.closed = len(self.items)
        item["status"] = status if item["type"] == "message" else "completed"
        out = b""
        if item["type"] == "message":
            part = item["content"][0]
            out += self._event("response.output_text.done", item_id=item["id"], output_index=index,
                               content_index=0, text=part["text"], logprobs=[])
            out += self._event("response.content_part.done", item_id=item["id"], output_index=index,
                               content_index=0, part=part)
        elif item["type"] == "reasoning":
            for part in item["summary"]:
                out += self._event("response.reasoning_summary_text.done", item_id=item["id"],
                                   output_index=index, summary_index=0, text=part["text"])
                out += self._event("response.reasoning_summary_part.done", item_id=item["id"],
                                   output_index=index, summary_index=0, part=part)
            if self.thinking:
                item["encrypted_content"] = sealed(self.thinking)
                self.thinking = []
        else:
            if not item["arguments"]:  # no arguments: the empty object, streamed too, so the deltas add up
                item["arguments"] = "{}"
                out += self._arguments_delta(item, "{}")
            out += self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                               name=item["name"], arguments=item["arguments"])
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def finish_events(self) -> bytes:
        out = b"" if self.response_id else self.start()
        status = _status(self.finish)
        out += self._end_open_item(status)
        self.final = self.shell.response(self.response_id, self.created, status, self.items, self.usage,
                                         self.finish, model=self.model)
        return out

    def last_event(self) -> bytes:
        """`response.completed` (or `response.incomplete`, or `response.failed`) with the whole Response, after
        `finish_events` (or `failure_events`)."""
        return self._event(f"response.{self.final['status']}", response=self.final)

    def failure_events(self, code: str, message: str) -> bytes:
        """The `error` event, for a failure after the stream began; `final` is then the failed Response, with the
        output so far, which `last_event` sends as `response.failed`."""
        out = b"" if self.response_id else self.start()
        out += self._event("error", code=code, message=message, param=None)
        if self.closed < len(self.items):  # the item cut short: OpenAI's status for an unfinished item
            self.items[-1]["status"] = "incomplete"
        self.held_calls.clear()  # never sent, and their arguments may be cut short too: not output so far
        # the Response's error.code is one of OpenAI's fixed values; the `error` event above keeps ours
        failed_code = "rate_limit_exceeded" if code in ("rate_limit_exceeded", "rate_limited") else "server_error"
        self.final = self.shell.response(self.response_id, self.created, "failed", self.items, self.usage,
                                         error={"code": failed_code, "message": message}, model=self.model)
        return out
