"""The mock upstream's Ollama native API: `POST /api/chat` and `POST /api/embed`.

Like Ollama it streams NDJSON unless the request says `stream: false`, errors
are ``{"error": "..."}``, images must be bare base64 strings (a `data:` URL
prefix fails to decode), tool call arguments must be JSON objects, roles are
system/user/assistant/tool, `format` is "json" or a schema object, and known
options must have the right types. Answers carry `done_reason`,
`prompt_eval_count` and `eval_count`, and tool calls with object arguments
(and no id, as older servers send them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.http.server import AbortConnection, Request, Response, StreamResponse
from switchboard.testing.mock_native import Invalid, count_model, injected_fault
from switchboard.testing.schema_example import NO_PARAMETERS, example_of

if TYPE_CHECKING:
    from switchboard.testing.mock_upstream import MockUpstream

_NUMBER_OPTIONS = {"temperature", "top_p", "presence_penalty", "frequency_penalty", "min_p", "repeat_penalty"}
_INT_OPTIONS = {"num_predict", "seed", "top_k", "num_ctx"}


def route(mock: MockUpstream, path: str):
    if path == "/api/chat":
        return lambda request, body: chat(mock, request, body)
    if path == "/api/embed":
        return lambda request, body: embed(mock, request, body)
    return None


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps({"error": message}), headers or {})


def fault_error(status: int, message: str, headers: dict[str, str]) -> Response:
    if message == "injected fault":
        message = {503: "server busy, please try again.  maximum pending requests exceeded",
                   401: "unauthorized", 429: "too many requests"}.get(status, message)
    return error(status, message, headers)


def validate(body: dict[str, Any]) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("model is required")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise Invalid("json: cannot unmarshal messages: expected an array")
    for i, msg in enumerate(messages):
        if msg.get("role") not in ("system", "user", "assistant", "tool"):
            raise Invalid(f"invalid role: {msg.get('role')!r}")
        if not isinstance(msg.get("content", ""), str):
            raise Invalid("json: cannot unmarshal array into Go struct field Message.messages.content of type string")
        for image in msg.get("images") or ():
            try:
                base64.b64decode(image, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise Invalid("illegal base64 data at input byte 4") from None
        for call in msg.get("tool_calls") or ():
            args = (call.get("function") or {}).get("arguments")
            if not isinstance(args, dict):
                raise Invalid("json: cannot unmarshal string into Go struct field ToolCallFunction.messages.tool_calls"
                              ".function.arguments of type api.ToolCallFunctionArguments")
    fmt = body.get("format")
    if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
        raise Invalid(f"invalid format: {fmt!r}")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise Invalid("json: cannot unmarshal options: expected an object")
    for key, value in options.items():
        if key in _NUMBER_OPTIONS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise Invalid(f"invalid float value [{value}] for option \"{key}\"")
        if key in _INT_OPTIONS and (isinstance(value, bool) or not isinstance(value, int)):
            raise Invalid(f"invalid int value [{value}] for option \"{key}\"")
        if key == "stop" and not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
            raise Invalid("invalid value for option \"stop\": must be a list of strings")
    for tool in body.get("tools") or ():
        if tool.get("type") != "function" or not (tool.get("function") or {}).get("name"):
            raise Invalid("json: cannot unmarshal tools: each tool needs type \"function\" and a function name")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


async def chat(mock: MockUpstream, request: Request, body: dict[str, Any]) -> Response | StreamResponse:
    model = str(body.get("model", ""))
    count_model(mock, model)
    fault = await injected_fault(mock, model)
    if fault is not None:
        return fault_error(*fault)
    try:
        validate(body)
    except Invalid as exc:
        return error(exc.status, exc.message)
    from switchboard.testing.mock_upstream import count_tokens, words_of

    behaviour = mock.behaviour(model)
    messages = body["messages"]
    prompt = "\n".join(m.get("content", "") for m in messages)
    prompt_tokens = count_tokens(prompt) + 64 * sum(len(m.get("images") or ()) for m in messages)
    if mock.too_long(model, prompt_tokens):
        return error(400, f"prompt too long; exceeded max context length by "
                          f"{prompt_tokens - (behaviour.context_window or 0)} tokens")
    tools = body.get("tools") or []
    call = None
    if tools and (not messages or messages[-1].get("role") != "tool"):
        call = {"function": {"name": tools[0]["function"]["name"],
                             "arguments": example_of(tools[0]["function"].get("parameters") or NO_PARAMETERS, "mock")}}
    text = mock.reply_for(model, prompt) if call is None else ""
    if body.get("format") is not None and call is None:  # "json", or a JSON schema
        schema = body["format"] if isinstance(body["format"], dict) else None
        text = orjson.dumps(example_of(schema, text) if schema else {"answer": text}).decode()
    for sequence in (body.get("options") or {}).get("stop") or ():
        if call is None and sequence in text:  # as Ollama's FindStop: "" is in every text, so it cuts at once
            text = text[:text.find(sequence)]
            break
    reason = "stop"
    limit = (body.get("options") or {}).get("num_predict")
    if call is None and limit is not None and limit >= 0 and count_tokens(text) > limit:
        kept = ""
        for piece in words_of(text):
            if count_tokens(kept + piece) > limit:
                break
            kept += piece
        text, reason = kept, "length"
    completion_tokens = count_tokens(text) if call is None else 9
    final = {"model": model, "created_at": _now(), "done": True, "done_reason": reason,
             "total_duration": 1_200_000, "load_duration": 100_000, "prompt_eval_count": prompt_tokens,
             "prompt_eval_duration": 300_000, "eval_count": completion_tokens, "eval_duration": 800_000}
    if body.get("stream", True):
        return StreamResponse(_stream(mock, model, text, call, final), content_type="application/x-ndjson")
    await mock.pace_first(behaviour)
    mock.account(prompt_tokens, completion_tokens)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if call is not None:
        message["tool_calls"] = [call]
    return Response(200, orjson.dumps({**final, "message": message}))


async def _stream(mock: MockUpstream, model: str, text: str, call: dict[str, Any] | None,
                  final: dict[str, Any]) -> AsyncIterator[bytes]:
    from switchboard.testing.mock_upstream import words_of

    behaviour = mock.behaviour(model)
    cut = mock.cut_after(model)
    await mock.pace_first(behaviour)
    if call is not None:
        yield orjson.dumps({"model": model, "created_at": _now(), "message": {
            "role": "assistant", "content": "", "tool_calls": [call]}, "done": False}) + b"\n"
    else:
        for sent, piece in enumerate(words_of(text)):
            if cut is not None and sent >= cut.after_chunks:
                mock.stats.faults += 1
                if cut.kind == "end":  # the body ends cleanly, unfinished
                    return
                raise AbortConnection()
            if behaviour.tokens_per_second:
                await asyncio.sleep(1.0 / behaviour.tokens_per_second)
            yield orjson.dumps({"model": model, "created_at": _now(),
                                "message": {"role": "assistant", "content": piece}, "done": False}) + b"\n"
    mock.account(final["prompt_eval_count"], final["eval_count"])
    yield orjson.dumps({**final, "message": {"role": "assistant", "content": ""}}) + b"\n"


async def embed(mock: MockUpstream, request: Request, body: dict[str, Any]) -> Response:
    from switchboard.testing.mock_upstream import count_tokens, fake_embedding

    model = str(body.get("model", ""))
    count_model(mock, model)
    fault = await injected_fault(mock, model)
    if fault is not None:
        return fault_error(*fault)
    inputs = body.get("input")
    items = [inputs] if isinstance(inputs, str) else inputs
    if not model or not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        return error(400, "invalid input type")
    dims = int(body.get("dimensions") or mock.behaviour(model).embedding_dims)
    tokens = sum(count_tokens(x) for x in items)
    mock.account(tokens, 0)
    return Response(200, orjson.dumps({"model": model, "embeddings": [fake_embedding(x, dims) for x in items],
                                       "total_duration": 50_000, "load_duration": 1_000,
                                       "prompt_eval_count": tokens}))
