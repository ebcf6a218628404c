"""The mock upstream: a real HTTP server that speaks providers' wire formats, with fault injection.

Tests, benchmarks and the zero-config demo all talk to it over loopback, so
every byte the gateway sends and receives goes through real sockets.

Behaviour is set per model (`ModelBehaviour`): fixed latency, time to first
token, tokens per second, the reply text (cut at the request's max_tokens,
finish_reason "length", as a model would), and faults (an HTTP status at a
given rate, 429 with Retry-After, hanging, dropping the connection before the
first byte, cutting a stream or sending an error event after N chunks). It can be changed while running
with ``POST /_mock/behaviour`` and inspected with ``GET /_mock/stats``, which
counts requests and the tokens the mock "billed", for reconciliation tests.
Chat `file` parts are read as OpenAI reads them: inline PDFs with a filename. Stop sequences end a
reply where the first of them would be complete, as a model writing left to right stops; OpenAI takes
at most 4 (a behaviour's `stop_limit`: any for a vLLM-like server), and its reasoning models none.
Every format's mock answers a tool call, or a JSON schema response format, with
a value of the schema it received (`testing.schema_example`). The OpenAI format
can instead make the calls a behaviour names (`tool_calls`, arguments sent
verbatim, valid JSON or not), stream their arguments in pieces, interleaving
parallel calls as some compatible servers do, and follow them with the reply text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from switchboard.core.request import messages_text
from switchboard.http.server import AbortConnection, HttpServer, Request, Response, StreamResponse
from switchboard.testing.pdf import file_prompt
from switchboard.testing.schema_example import NO_PARAMETERS, example_of


@dataclass
class Fault:
    """One injected fault. kind: status | hang | drop | cut | end | error | empty.

    `error` ends a stream with an in-band error event of `status` after `after_chunks` chunks (0: before the
    first), as OpenAI-format servers and Anthropic do; the other formats have none and drop the connection.
    `empty` (OpenAI format) is a stream of `data: [DONE]` alone, as some proxies answer an upstream failure."""

    kind: str = "status"
    rate: float = 1.0
    status: int = 500
    retry_after: float | str | None = None  # seconds, or the header's text as sent (an HTTP date, junk)
    after_chunks: int = 1
    message: str = "injected fault"


@dataclass
class ModelBehaviour:
    reply: str | None = None
    latency: float = 0.0
    ttft: float | None = None
    tokens_per_second: float | None = None
    faults: list[Fault] = field(default_factory=list)
    embedding_dims: int = 16
    context_window: int | None = None
    report_usage: bool = True
    safety_block: str | None = None  # "prompt" or "output": a provider-native safety block (Gemini, Bedrock, Azure)
    logprob: float = -0.05  # each answer token's log-probability, when a request asks for logprobs (OpenAI format)
    completion_id: str | None = None  # every answer's id (OpenAI format), as servers that repeat ids do
    # OpenAI format: the tool calls made when the request offers tools, [{"name", "arguments"}] with the arguments
    # sent as given (valid JSON or not), instead of one call with an example value of the first tool's schema
    tool_calls: list[dict[str, str]] | None = None
    argument_pieces: int = 1  # a streamed call's arguments come in this many pieces
    interleave_tool_calls: bool = False  # parallel calls' pieces come in turn (0, 1, 0, 1...) instead of one by one
    reply_after_tool_calls: bool = False  # the reply text follows the tool calls, in the same answer
    stop_limit: int | None = 4  # OpenAI format: the most `stop` sequences taken (OpenAI's 4); None: any, as vLLM

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelBehaviour:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown mock behaviour setting(s): {', '.join(sorted(unknown))}")
        data = dict(data)
        data["faults"] = [f if isinstance(f, Fault) else Fault(**f) for f in data.get("faults", [])]
        return cls(**data)


@dataclass
class Stats:
    requests: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    by_path: dict[str, int] = field(default_factory=dict)
    faults: int = 0
    completed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_request: Any = None
    last_headers: dict[str, str] = field(default_factory=dict)
    last_query: str = ""


def count_tokens(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def words_of(text: str) -> list[str]:
    """Split a reply into stream pieces (one 'token' each), keeping the spaces."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest run of the reply's first words that fits in `limit` tokens (a reply cut at max_tokens)."""
    out = ""
    for piece in words_of(text):
        if count_tokens(out + piece) > limit:
            break
        out += piece
    return out


class MockUpstream:
    """Holds the per-model behaviour and serves every supported wire format."""

    def __init__(self, behaviours: dict[str, ModelBehaviour] | None = None, default: ModelBehaviour | None = None,
                 seed: int | None = None) -> None:
        self.behaviours = behaviours or {}
        self.default = default or ModelBehaviour()
        self.stats = Stats()
        self.rng = random.Random(seed)
        self.prompt_cache: set[tuple[str, bytes]] = set()  # (model, prefix digest): Anthropic-style prompt caching
        self.server = HttpServer(self.handle, max_body_bytes=64 * 1024 * 1024)
        self.port: int | None = None

    def behaviour(self, model: str) -> ModelBehaviour:
        return self.behaviours.get(model, self.default)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.port = await self.server.start(host, port)
        return self.port

    async def close(self) -> None:
        await self.server.shutdown(drain_seconds=0.5)

    # ---------------------------------------------------------------- dispatch

    async def handle(self, request: Request) -> Response | StreamResponse:
        path = request.path
        if path.startswith("/_mock/"):
            return self.control(request)
        self.stats.requests += 1
        self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1
        self.stats.last_headers = dict(request.headers)
        self.stats.last_query = request.query
        try:
            body = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError:
            return _error(400, "invalid JSON body", "invalid_request_error")
        self.stats.last_request = body
        handler = self.route(request.method, path)
        if handler is None:
            return _error(404, f"mock upstream has no route {request.method} {path}", "invalid_request_error")
        return await handler(request, body)

    def route(self, method: str, path: str):
        from switchboard.testing.mock_native import native_route  # Gemini, Azure, Bedrock, Ollama
        if (handler := native_route(self, method, path)) is not None:
            return handler
        if method == "POST" and path.endswith("/chat/completions"):
            return self.openai_chat
        if method == "POST" and path.endswith("/embeddings"):
            return self.openai_embeddings
        if method == "GET" and path.endswith("/models"):
            return self.openai_models
        from switchboard.testing.mock_anthropic import anthropic_route
        if (handler := anthropic_route(self, method, path)) is not None:
            return handler
        return None

    def control(self, request: Request) -> Response:
        if request.path == "/_mock/stats":
            return Response(200, orjson.dumps(asdict(self.stats)))
        if request.path == "/_mock/reset" and request.method == "POST":
            self.stats = Stats()
            return Response(200, b'{"ok":true}')
        if request.path == "/_mock/behaviour" and request.method == "POST":
            try:
                data = orjson.loads(request.body)
                for model, settings in data.items():
                    if model == "*":
                        self.default = ModelBehaviour.from_dict(settings)
                    else:
                        self.behaviours[model] = ModelBehaviour.from_dict(settings)
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
                return _error(400, f"bad behaviour: {exc}", "invalid_request_error")
            return Response(200, b'{"ok":true}')
        return _error(404, "unknown control path", "invalid_request_error")

    # ---------------------------------------------------------------- faults

    async def before_reply(self, model: str) -> Response | None:
        """Apply the model's non-stream faults and latency; returns an error response to send, if any."""
        behaviour = self.behaviour(model)
        for fault in behaviour.faults:
            if fault.kind in STREAM_FAULTS or self.rng.random() >= fault.rate:
                continue
            self.stats.faults += 1
            if fault.kind == "hang":
                await asyncio.sleep(3600)
            if fault.kind == "drop":
                raise AbortConnection()
            headers = {}
            if isinstance(fault.retry_after, str):
                headers["retry-after"] = fault.retry_after
            elif fault.retry_after is not None:
                headers["retry-after"] = f"{fault.retry_after:g}"
            return self.error_response(fault.status, fault.message, headers)
        return None

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error"}.get(status, "server_error")
        return _error(status, message, kind, headers)

    def cut_after(self, model: str) -> Fault | None:
        """The fault that cuts this stream short after `after_chunks` chunks, if one strikes: `cut` drops the
        connection, `end` ends the body cleanly without the stream's end (a proxy that gave up), `error` sends an
        error event (where the format has one)."""
        for fault in self.behaviour(model).faults:
            if fault.kind in STREAM_FAULTS and self.rng.random() < fault.rate:
                return fault
        return None

    async def pace_first(self, behaviour: ModelBehaviour) -> None:
        delay = behaviour.ttft if behaviour.ttft is not None else behaviour.latency
        if delay:
            await asyncio.sleep(delay)

    # ---------------------------------------------------------------- content

    def reply_for(self, model: str, prompt: str) -> str:
        behaviour = self.behaviour(model)
        if behaviour.reply is not None:
            return behaviour.reply
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        return f"This is a simulated reply from {model} (prompt {digest})."

    def account(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.stats.completed += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens

    def too_long(self, model: str, prompt_tokens: int) -> bool:
        window = self.behaviour(model).context_window
        return window is not None and prompt_tokens > window

    # ---------------------------------------------------------------- OpenAI format

    async def openai_chat(self, request: Request, body: dict[str, Any]) -> Response | StreamResponse:
        model = str(body.get("model", ""))
        self.stats.by_model[model] = self.stats.by_model.get(model, 0) + 1
        error = await self.before_reply(model)
        if error is not None:
            return error
        messages = body.get("messages") or []
        if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
            return _error(400, "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
                          "invalid_request_error", code="invalid_parameter_combination", param="max_tokens")
        refusal = _reasoning_refusal(body, model.lower())
        if refusal is not None:
            return _error(400, refusal[0], "invalid_request_error", code=refusal[1], param=refusal[2])
        unexpected = _unexpected_field(body, model.lower())
        if unexpected is not None:
            return _error(400, unexpected, "invalid_request_error")
        stops = body.get("stop")
        stops = [stops] if isinstance(stops, str) else stops or []
        limit = self.behaviour(model).stop_limit
        if limit is not None and len(stops) > limit:
            return _error(400, f"Invalid 'stop': array too long. Expected an array with maximum length "
                               f"{limit}, but got an array with length {len(stops)} instead.",
                          "invalid_request_error", code="array_above_max_length", param="stop")
        files = _read_files(messages)
        if isinstance(files, Response):
            return files
        prompt = messages_text(messages) + files[0]
        prompt_tokens = count_tokens(prompt) + files[1]
        if self.too_long(model, prompt_tokens):
            return _error(400, f"This model's maximum context length is {self.behaviour(model).context_window} tokens. "
                               f"However, your messages resulted in {prompt_tokens} tokens.",
                          "invalid_request_error", code="context_length_exceeded")
        behaviour = self.behaviour(model)
        tool_calls = _tool_calls(body, behaviour)
        text = self.reply_for(model, prompt)
        text = _structured(body.get("response_format"), text)
        if tool_calls and not behaviour.reply_after_tool_calls:
            text = ""
        if not tool_calls:
            text, _ = stopped_at(text, stops)
        finish = "tool_calls" if tool_calls else "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        reasoning = _reasoning_tokens(body, model.lower())
        if isinstance(limit, int):  # reasoning counts inside max_completion_tokens, and may use it all
            reasoning = min(reasoning, limit)
            limit -= reasoning
        if not tool_calls and isinstance(limit, int) and count_tokens(text) > limit:
            text, finish = truncate_to_tokens(text, max(0, limit)), "length"
        created = int(time.time())
        cid = behaviour.completion_id or "chatcmpl-" + uuid.uuid4().hex[:24]
        n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 0) > 0 else 1  # choices, all alike
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and behaviour.report_usage
            return StreamResponse(self._openai_stream(model, cid, created, text, tool_calls, prompt_tokens,
                                                      include_usage, behaviour, finish, reasoning, n))
        await self.pace_first(behaviour)
        if behaviour.tokens_per_second:
            await asyncio.sleep(len(words_of(text)) / behaviour.tokens_per_second)
        completion_tokens = (_answer_tokens(text, tool_calls) + reasoning) * n
        self.account(prompt_tokens, completion_tokens)
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None,
                                   "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        logprobs = None
        if body.get("logprobs") and not tool_calls:
            logprobs = {"content": [{"token": piece, "logprob": behaviour.logprob, "bytes": list(piece.encode()),
                                     "top_logprobs": []} for piece in words_of(text)], "refusal": None}
        result: dict[str, Any] = {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish}
                        for i in range(n)],
            "system_fingerprint": "fp_mock",
        }
        if behaviour.report_usage:
            result["usage"] = _usage(prompt_tokens, completion_tokens, reasoning)
        return Response(200, orjson.dumps(result))

    async def _openai_stream(self, model: str, cid: str, created: int, text: str, tool_calls: list[dict[str, Any]],
                             prompt_tokens: int, include_usage: bool, behaviour: ModelBehaviour,
                             finish: str, reasoning: int = 0, n: int = 1) -> AsyncIterator[bytes]:
        cut = self.cut_after(model)
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_mock"}
        await self.pace_first(behaviour)
        pieces = words_of(text) if text or not tool_calls else []
        sent = 0

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return b"".join(b"data: " + orjson.dumps({**base, "choices": [{"index": i, "delta": delta, "logprobs": None,
                                                                             "finish_reason": finish}]}) + b"\n\n"
                            for i in range(n))

        if cut is not None and cut.kind == "error" and cut.after_chunks == 0:
            self.stats.faults += 1
            yield _stream_error_event(cut)
            return
        if cut is not None and cut.kind == "empty":
            self.stats.faults += 1
            yield b"data: [DONE]\n\n"
            return
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        sent += 1
        for call_delta in _tool_call_deltas(tool_calls, behaviour.argument_pieces, behaviour.interleave_tool_calls):
            yield chunk({"tool_calls": [call_delta]})
        for piece in pieces:
            if cut is not None and sent >= cut.after_chunks:
                self.stats.faults += 1
                if cut.kind == "error":
                    yield _stream_error_event(cut)
                if cut.kind in ("end", "error"):  # the body ends cleanly, unfinished
                    return
                raise AbortConnection()
            if behaviour.tokens_per_second and sent > 1:  # the first token comes with the role, at `ttft`
                await asyncio.sleep(1.0 / behaviour.tokens_per_second)
            yield chunk({"content": piece})
            sent += 1
        yield chunk({}, finish)
        completion_tokens = (_answer_tokens(text, tool_calls) + reasoning) * n
        self.account(prompt_tokens, completion_tokens)
        if include_usage:
            yield b"data: " + orjson.dumps({**base, "choices": [],
                                            "usage": _usage(prompt_tokens, completion_tokens, reasoning)}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def openai_embeddings(self, request: Request, body: dict[str, Any]) -> Response:
        model = str(body.get("model", ""))
        self.stats.by_model[model] = self.stats.by_model.get(model, 0) + 1
        error = await self.before_reply(model)
        if error is not None:
            return error
        await self.pace_first(self.behaviour(model))
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dims = int(body.get("dimensions") or self.behaviour(model).embedding_dims)
        data = [{"object": "embedding", "index": i, "embedding": fake_embedding(str(item), dims)}
                for i, item in enumerate(items)]
        if body.get("encoding_format") == "base64":  # as OpenAI answers it: little-endian float32, base64
            from switchboard.providers.canonical import embeddings_as_base64

            data = embeddings_as_base64({"data": data})["data"]
        tokens = sum(count_tokens(str(item)) for item in items)
        self.account(tokens, 0)
        return Response(200, orjson.dumps({"object": "list", "data": data, "model": model,
                                           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))

    async def openai_models(self, request: Request, body: dict[str, Any]) -> Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "mock"} for name in self.behaviours]
        return Response(200, orjson.dumps({"object": "list", "data": data}))


STREAM_FAULTS = ("cut", "end", "error", "empty")


def _stream_error_event(fault: Fault) -> bytes:
    """An OpenAI-format server's in-band stream error, its HTTP status as the code (as vLLM sends it)."""
    kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(fault.status, "server_error")
    return b"data: " + orjson.dumps({"error": {"message": fault.message, "type": kind, "param": None,
                                               "code": fault.status}}) + b"\n\n"


def stopped_at(text: str, stops: list[str]) -> tuple[str, str | None]:
    """(the reply as a model that stops at its first complete stop sequence writes it, that sequence or None).
    An empty sequence stops nothing."""
    ends = [(at + len(stop), at, stop) for stop in stops if stop and (at := text.find(stop)) >= 0]
    if not ends:
        return text, None
    _, at, stop = min(ends)
    return text[:at], stop


def pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool call the mock makes: the named tool, or the first one, unless tool_choice is 'none'."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    name = tools[0].get("function", {}).get("name", "tool")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name", name)
    spec = next((t.get("function") or {} for t in tools if (t.get("function") or {}).get("name") == name), {})
    arguments = example_of(spec.get("parameters") or NO_PARAMETERS, "mock")
    return {"id": "call_" + uuid.uuid4().hex[:20], "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}}


def _tool_calls(body: dict[str, Any], behaviour: ModelBehaviour) -> list[dict[str, Any]]:
    """The calls of an answer: the behaviour's when the request offers tools (and allows them), else pick_tool's."""
    if behaviour.tool_calls is None:
        picked = pick_tool(body)
        return [picked] if picked is not None else []
    if not body.get("tools") or body.get("tool_choice") == "none":
        return []
    return [{"id": "call_" + uuid.uuid4().hex[:20], "type": "function",
             "function": {"name": call["name"], "arguments": call.get("arguments", "")}}
            for call in behaviour.tool_calls]


def _tool_call_deltas(calls: list[dict[str, Any]], pieces: int, interleave: bool) -> list[dict[str, Any]]:
    """The streamed `tool_calls` deltas of `calls`, one call after another, or interleaved: a delta of each call
    in turn (headers 0, 1, then arguments 0, 1, 0, 1...)."""
    per_call = [_call_deltas(index, call, pieces) for index, call in enumerate(calls)]
    if not interleave:
        return [delta for deltas in per_call for delta in deltas]
    rounds = itertools.zip_longest(*per_call)
    return [delta for deltas in rounds for delta in deltas if delta is not None]


def _call_deltas(index: int, call: dict[str, Any], pieces: int) -> list[dict[str, Any]]:
    """One call's deltas: its header (id, name, no arguments), then its arguments in `pieces` pieces."""
    fn = call["function"]
    header = {"index": index, "id": call["id"], "type": "function", "function": {"name": fn["name"], "arguments": ""}}
    return [header] + [{"index": index, "function": {"arguments": piece}} for piece in _split(fn["arguments"], pieces)]


def _split(text: str, pieces: int) -> list[str]:
    """`text` in `pieces` pieces of about the same length (one empty piece for empty text)."""
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _answer_tokens(text: str, tool_calls: list[dict[str, Any]]) -> int:
    return count_tokens(text) + (12 if tool_calls else 0)


def _structured(response_format: Any, text: str) -> str:
    """The reply as the response format asks: a value of its JSON schema, {"answer": text} for a JSON object."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        return orjson.dumps(example_of((response_format.get("json_schema") or {}).get("schema"), text)).decode()
    return orjson.dumps({"answer": text}).decode() if kind == "json_object" else text


def fake_embedding(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] + i * 31) % 256 / 255.0 - 0.5 for i in range(dims)]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in raw]


def _usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return usage


# OpenAI's reasoning models as the mock knows them (o-series, gpt-5 but not its chat models), and the chat
# models that refuse reasoning_effort; what each effort "thinks", in tokens.
_REASONING_MODEL = re.compile(r"^(o[134]|gpt-5)(?!.*-chat)")
_PLAIN_MODEL = re.compile(r"^(gpt-4|gpt-3\.5|gpt-5.*-chat)")
_EFFORT_TOKENS = {"none": 0, "minimal": 0, "low": 64, "medium": 192, "high": 512, "xhigh": 1024}
_REFUSED_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
                     "logit_bias")


def _reasoning_tokens(body: dict[str, Any], model: str) -> int:
    if not _REASONING_MODEL.match(model):
        return 0
    return _EFFORT_TOKENS.get(str(body.get("reasoning_effort") or "medium"), 192)


def _reasoning_refusal(body: dict[str, Any], model: str) -> tuple[str, str, str] | None:
    """(message, code, param) of OpenAI's refusal of what a reasoning model does not take (max_tokens, stop,
    sampling), or of reasoning_effort on a chat model."""
    if _PLAIN_MODEL.match(model):
        if "reasoning_effort" in body:
            return ("Unrecognized request argument supplied: reasoning_effort", "unsupported_parameter",
                    "reasoning_effort")
        return None
    if not _REASONING_MODEL.match(model):
        return None
    if "max_tokens" in body:
        return ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.", "unsupported_parameter", "max_tokens")
    if body.get("stop") is not None:
        return "Unsupported parameter: 'stop' is not supported with this model.", "unsupported_parameter", "stop"
    if body.get("reasoning_effort") == "none":
        return None
    for key in _REFUSED_SAMPLING:
        value = body.get(key)
        if key == "temperature" and value is not None and value != 1:
            return (f"Unsupported value: 'temperature' does not support {value} with this model. "
                    "Only the default (1) value is supported.", "unsupported_value", "temperature")
        if key != "temperature" and key in body:
            return (f"Unsupported parameter: '{key}' is not supported with this model.", "unsupported_parameter", key)
    return None


def _unexpected_field(body: dict[str, Any], model: str) -> str | None:
    """OpenAI's refusal of a field it does not know: `thinking`, or on a message, in a tool call, in a
    content part, in a tool. Gemini and Claude models served by OpenAI-compatible endpoints take their own
    marks (`extra_content`; `cache_control`, thinking blocks), so the model's name decides, as for a proxy."""
    allowed_call = {"id", "type", "function"} | ({"extra_content"} if "gemini" in model else set())
    allowed_extra = {"cache_control"} if "claude" in model else set()
    if "thinking" in body and "claude" not in model:
        return "Unrecognized request argument supplied: thinking"
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        for key in ("thinking_blocks", "reasoning_content"):
            if key in message and "claude" not in model:
                return _not_allowed(key, f"messages.{i}")
        for j, call in enumerate(message.get("tool_calls") or []):
            extra = sorted(set(call) - allowed_call) if isinstance(call, dict) else []
            if extra:
                return _not_allowed(extra[0], f"messages.{i}.tool_calls.{j}")
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and "cache_control" in part and not allowed_extra:
                return _not_allowed("cache_control", f"messages.{i}.content.{j}")
    for i, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and "cache_control" in tool and not allowed_extra:
            return _not_allowed("cache_control", f"tools.{i}")
    return None


def _read_files(messages: list[Any]) -> tuple[str, int] | Response:
    """The text the model reads of the request's `file` parts (PDFs, given inline with a filename, as OpenAI's
    chat API wants them) and the tokens they cost besides, or OpenAI's 400."""
    text, tokens = "", 0
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if not isinstance(part, dict) or part.get("type") != "file":
                continue
            where = f"messages[{i}].content[{j}].file"
            spec = part.get("file") if isinstance(part.get("file"), dict) else {}
            if isinstance(spec.get("file_id"), str):
                return _error(404, f"No such File object: {spec['file_id']}", "invalid_request_error",
                              param=f"{where}.file_id")
            if not isinstance(spec.get("file_data"), str) or not isinstance(spec.get("filename"), str):
                # what OpenAI answers to file_data without a filename
                return _error(400, f"Missing required parameter: '{where}.file_id'.", "invalid_request_error",
                              code="missing_required_parameter", param=f"{where}.file_id")
            header, _, payload = spec["file_data"].partition(",")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                data = b""
            if header != "data:application/pdf;base64" or not data.startswith(b"%PDF-"):
                return _error(400, f"Invalid file data: '{where}.file_data'. Expected a base64-encoded data URL "
                                   "with an application/pdf MIME type.", "invalid_request_error",
                              code="invalid_value", param=f"{where}.file_data")
            read, extra = file_prompt("application/pdf", data)
            text, tokens = f"{text}\n{read}", tokens + extra
    return text, tokens


def _not_allowed(field: str, path: str) -> str:
    return f"Additional properties are not allowed ('{field}' was unexpected) - '{path}'"


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None,
           code: str | None = None, param: str | None = None) -> Response:
    return Response(status, orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}}),
                    headers or {})


async def serve_forever(mock: MockUpstream, host: str, port: int) -> None:
    bound = await mock.start(host, port)
    print(f"mock upstream listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await mock.close()
