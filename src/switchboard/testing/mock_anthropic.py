"""The mock upstream's Anthropic Messages API: POST /v1/messages, plus test images at GET /images/*.

It validates requests about as strictly as Anthropic does (so translation bugs
fail tests loudly, with Anthropic-shaped 400s): required `max_tokens`, no
system role inside `messages`, strictly alternating roles, well-formed
content blocks (base64 images whose bytes match their media type, documents:
PDFs read with `testing.pdf`, each page costing tokens as its image would), tool
results answering the previous turn's tool calls, no unknown fields. Faults,
latency and pacing come from the same per-model `ModelBehaviour` as the
OpenAI format. Prompt caching works as Anthropic's does, minus the minimum
length: the prompt up to its last block marked with `cache_control` (tools,
then system, then messages) is written to the cache the first time it is seen
(`cache_creation_input_tokens`) and read from it after that
(`cache_read_input_tokens`); at most 4 marked blocks. A breakpoint's `ttl` may be
'5m' (the default) or '1h', one-hour ones first: the write up to the last
one-hour breakpoint is reported apart (`cache_creation.ephemeral_1h_input_tokens`). Extended thinking as
Claude does it: `thinking` is checked (a budget of at least 1,024 below
max_tokens, no temperature other than 1, no top_k, no forced tool), the answer
starts with a thinking block signed by the mock, and an assistant turn that
called a tool must come back starting with its signed thinking block. A model
with `safety_block` set answers with stop_reason `refusal`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.http.server import AbortConnection, Request, Response, StreamResponse
from switchboard.testing.pdf import file_prompt
from switchboard.testing.schema_example import example_of

if TYPE_CHECKING:
    from switchboard.testing.mock_upstream import MockUpstream

_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p",
                     "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier", "output_config"})
_MEDIA_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/gif": b"GIF8",
                 "image/webp": b"RIFF"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 504: "timeout_error", 529: "overloaded_error", 503: "overloaded_error"}


def _png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, red) PNG, built here so the tests need no binary fixtures."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


PNG = _png()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock" + uuid.uuid4().hex[:12]}
    return Response(status, orjson.dumps(body), headers or {})


class Invalid(Exception):
    """A request Anthropic would refuse with 400 invalid_request_error."""


def anthropic_route(mock: MockUpstream, method: str, path: str):
    """The handler for an Anthropic-format path, or None; hooked into `MockUpstream.route`."""
    if method == "POST" and path.endswith("/v1/messages"):
        return lambda request, body: messages(mock, request, body)
    if method == "GET" and path.startswith("/images/"):
        return lambda request, body: image(request)
    return None


async def image(request: Request) -> Response:
    if request.path == "/images/pixel.png":
        return Response(200, PNG, content_type="image/png")
    if request.path == "/images/big.png":
        return Response(200, PNG + b"\x00" * (21 * 1024 * 1024), content_type="image/png")
    if request.path == "/images/redirect.png":
        return Response(302, b"", {"location": "/images/pixel.png"})
    if request.path == "/images/page.html":
        return Response(200, b"<html>not an image</html>", content_type="text/html")
    return Response(404, b"no such image", content_type="text/plain")


# ---------------------------------------------------------------- validation


def _check_text(block: dict[str, Any], p: str) -> None:
    if not isinstance(block.get("text"), str):
        raise Invalid(f"{p}.text: Field required")
    if not block["text"]:
        raise Invalid(f"{p}: text content blocks must be non-empty")


def _check_image(block: dict[str, Any], p: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise Invalid(f"{p}.source: Field required")
    if source.get("type") == "url":
        if not isinstance(source.get("url"), str):
            raise Invalid(f"{p}.source.url: Field required")
        return
    if source.get("type") != "base64":
        raise Invalid(f"{p}.source.type: Input should be 'base64' or 'url'")
    media = source.get("media_type")
    if media not in _MEDIA_TYPES:
        raise Invalid(f"{p}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
    try:
        data = base64.b64decode(source.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{p}.source.data: invalid base64 data") from None
    if not data or not data.startswith(_MEDIA_TYPES[media]):
        raise Invalid(f"{p}: Image does not match the provided media type {media}")


_DOCUMENT_FIELDS = frozenset({"type", "source", "title", "context", "citations", "cache_control"})


def _check_document(block: dict[str, Any], p: str) -> None:
    extra = sorted(set(block) - _DOCUMENT_FIELDS)
    if extra:
        raise Invalid(f"{p}.{extra[0]}: Extra inputs are not permitted")
    for name in ("title", "context"):
        if block.get(name) is not None and not isinstance(block[name], str):
            raise Invalid(f"{p}.{name}: Input should be a valid string")
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        if source.get("media_type") != "application/pdf":
            raise Invalid(f"{p}.source.base64.media_type: Input should be 'application/pdf'")
        try:
            data = base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if not data.startswith(b"%PDF-"):
            raise Invalid(f"{p}.source.base64.data: The PDF specified was not valid.")
    elif kind == "text":
        if source.get("media_type") != "text/plain" or not isinstance(source.get("data"), str):
            raise Invalid(f"{p}.source.text: media_type 'text/plain' and data are required")
    elif kind == "content":
        if not isinstance(source.get("content"), (str, list)):
            raise Invalid(f"{p}.source.content.content: Field required")
    elif kind == "url":
        if not isinstance(source.get("url"), str):
            raise Invalid(f"{p}.source.url.url: Field required")
    else:
        raise Invalid(f"{p}.source: Input tag {kind!r} found using 'type' does not match any of the expected tags: "
                      "'base64', 'content', 'text', 'url'")


def document_text(block: dict[str, Any]) -> tuple[str, int]:
    """What the model reads of a document block, and the tokens its pages cost besides."""
    source = block["source"]
    if source["type"] == "base64":
        return file_prompt("application/pdf", base64.b64decode(source["data"]))
    if source["type"] == "text":
        return source["data"], 0
    if source["type"] == "content":
        content = source["content"]
        return content if isinstance(content, str) else "\n".join(b.get("text", "") for b in content), 0
    return source.get("url", ""), 0


def _check_blocks(content: Any, role: str, p: str, pending_tools: set[str]) -> set[str]:
    """Validate one message's content; returns the tool_use ids it opens (assistant) for the next turn."""
    if isinstance(content, str):
        if pending_tools:
            raise Invalid(f"{p}: tool_use ids were found without tool_result blocks immediately after: "
                          f"{', '.join(sorted(pending_tools))}")
        return set()
    if not isinstance(content, list) or not content:
        raise Invalid(f"{p}: must be a string or a non-empty list of content blocks")
    opened: set[str] = set()
    answered: set[str] = set()
    for i, block in enumerate(content):
        bp = f"{p}.{i}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            _check_text(block, bp)
        elif kind == "image" and role == "user":
            _check_image(block, bp)
        elif kind == "document" and role == "user":
            _check_document(block, bp)
        elif kind == "thinking" and role == "assistant":
            if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
                raise Invalid(f"{bp}: a thinking block needs 'thinking' and 'signature'")
        elif kind == "redacted_thinking" and role == "assistant":
            if not isinstance(block.get("data"), str):
                raise Invalid(f"{bp}.data: Field required")
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise Invalid(f"{bp}: tool_use needs id and name")
            if not isinstance(block.get("input"), dict):
                raise Invalid(f"{bp}.input: Input should be a valid dictionary")
            opened.add(block["id"])
        elif kind == "tool_result" and role == "user":
            tid = block.get("tool_use_id")
            if tid not in pending_tools:
                raise Invalid(f"{bp}: unexpected `tool_use_id` found in `tool_result` blocks: {tid}. Each "
                              "`tool_result` block must have a corresponding `tool_use` block in the previous message.")
            answered.add(tid)
            inner = block.get("content")
            if inner is not None and not isinstance(inner, str):
                if not isinstance(inner, list):
                    raise Invalid(f"{bp}.content: Input should be a valid list")
                for j, item in enumerate(inner):
                    if isinstance(item, dict) and item.get("type") == "image":
                        _check_image(item, f"{bp}.content.{j}")
                    elif isinstance(item, dict) and item.get("type") == "text":
                        _check_text(item, f"{bp}.content.{j}")
                    else:
                        raise Invalid(f"{bp}.content.{j}: Input tag does not match any of the expected tags")
        else:
            raise Invalid(f"{bp}.type: Input tag {kind!r} found using 'type' does not match the expected tags "
                          f"for a {role} message")
    missing = pending_tools - answered
    if missing:
        raise Invalid(f"{p}: tool_use ids were found without tool_result blocks immediately after: "
                      f"{', '.join(sorted(missing))}")
    return opened


def validate(body: Any, headers: dict[str, str]) -> None:
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise Invalid(f"{unknown[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise Invalid("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: Field required")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            raise Invalid("system: Input should be a valid string or list")
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise Invalid(f"system.{i}.type: Input should be 'text'")
            _check_text(block, f"system.{i}")
    pending: set[str] = set()
    previous = None
    for i, msg in enumerate(messages):
        p = f"messages.{i}"
        role = msg.get("role") if isinstance(msg, dict) else None
        if role == "system":
            raise Invalid(f"{p}.role: Unexpected role \"system\". The Messages API accepts a top-level `system` "
                          "parameter, not \"system\" as an input message role.")
        if role not in ("user", "assistant"):
            raise Invalid(f"{p}.role: Input should be 'user' or 'assistant'")
        if role == previous:
            raise Invalid(f"messages: roles must alternate between \"user\" and \"assistant\", "
                          f"but found multiple \"{role}\" roles in a row")
        previous = role
        pending = _check_blocks(msg.get("content"), role, f"{p}.content", pending if role == "user" else set())
    for name, lo, hi in (("temperature", 0, 1), ("top_p", 0, 1)):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi):
            raise Invalid(f"{name}: Input should be between {lo} and {hi}")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) and s.strip() for s in stops)):
        raise Invalid("stop_sequences: Input should be a list of non-whitespace strings")
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise Invalid("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or "function" in tool or tool.get("type") not in (None, "custom"):
                raise Invalid(f"tools.{i}: Input tag does not match the expected tags (custom tools take "
                              "name, description and input_schema)")
            if not isinstance(tool.get("name"), str) or not _TOOL_NAME.match(tool["name"]):
                raise Invalid(f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise Invalid(f"tools.{i}.input_schema.type: Input should be 'object'")
            names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            raise Invalid("tool_choice: may only be specified while providing tools")
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise Invalid(f"tool_choice.name: tool {choice.get('name')!r} not found in tools")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise Invalid("metadata: only user_id is allowed")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise Invalid("stream: Input should be a valid boolean")
    _check_thinking(body)
    config = body.get("output_config")
    if config is not None and (not isinstance(config, dict) or set(config) - {"effort", "format"}
                               or config.get("effort") not in (None, "low", "medium", "high", "xhigh", "max")):
        raise Invalid("output_config: only 'effort' (low, medium, high, xhigh or max) and 'format' are allowed")
    breakpoints = _breakpoints(body)
    if breakpoints > 4:
        raise Invalid(f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}.")


# ---------------------------------------------------------------- reply


def signature_of(thought: str) -> str:
    """The mock's signature of a thinking block (Claude's are opaque; this one can be checked)."""
    return base64.b64encode(hashlib.sha256(b"mock-thinking\0" + thought.encode()).digest()).decode()


def _thinking_on(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _check_thinking(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        raise Invalid("thinking.type: Input tag does not match any of the expected tags: "
                      "'enabled', 'disabled', 'adaptive'")
    if thinking["type"] == "disabled":
        return
    budget = thinking.get("budget_tokens")
    if thinking["type"] == "adaptive":
        if budget is not None:
            raise Invalid("thinking.adaptive.budget_tokens: Extra inputs are not permitted")
    elif isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
        raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if budget is not None and budget >= body["max_tokens"]:
        raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
                      "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-"
                      "window-size")
    if body.get("temperature") not in (None, 1):
        raise Invalid("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation "
                      "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility")
    if body.get("top_k") is not None:
        raise Invalid("`top_k` is not supported when thinking is enabled.")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
    last_call = max((i for i, m in enumerate(body["messages"]) if m.get("role") == "assistant"
                     and isinstance(m.get("content"), list) and any(b.get("type") == "tool_use" for b in m["content"])),
                    default=None)
    if last_call is None:
        return
    first = body["messages"][last_call]["content"][0]
    if first.get("type") not in ("thinking", "redacted_thinking"):
        raise Invalid(f"messages.{last_call}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                      f"`{first.get('type')}`. When `thinking` is enabled, a final `assistant` message must start "
                      "with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks).")
    if first["type"] == "thinking" and first.get("signature") != signature_of(first.get("thinking") or ""):
        raise Invalid(f"messages.{last_call}.content.0: Invalid `signature` in `thinking` block")


def _ttl(block: dict[str, Any]) -> str | None:
    """The TTL of a block's cache breakpoint ('5m' or '1h'), or None when it has none."""
    cc = block.get("cache_control")
    return cc.get("ttl", "5m") if isinstance(cc, dict) else None


def _segments(content: Any, out: list[tuple[str, str | None]]) -> None:
    """Append (text, TTL of its cache breakpoint or None) for each block of a system prompt or message content."""
    if isinstance(content, str):
        out.append((content, None))
        return
    for block in content or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            out.append((block["text"], _ttl(block)))
        elif block.get("type") == "tool_result":
            _segments(block.get("content") or [], out)
            out.append(("", _ttl(block)))
        elif block.get("type") == "document":
            out.append((document_text(block)[0], _ttl(block)))
        else:  # images, tool_use: no text counted here, but they may carry a breakpoint
            out.append(("", _ttl(block)))


def prompt_parts(body: dict[str, Any]) -> tuple[str, str, str]:
    """(rest, cacheable prefix, its part up to the last one-hour breakpoint): the prefix is the prompt up to its
    last `cache_control` breakpoint, tools (their JSON, counted only when something is marked) first, as
    Anthropic orders the cache."""
    segments: list[tuple[str, str | None]] = []
    _segments(body.get("system"), segments)
    for msg in body["messages"]:
        _segments(msg.get("content"), segments)
    tools = [(orjson.dumps({k: v for k, v in t.items() if k != "cache_control"}).decode(), _ttl(t))
             for t in body.get("tools") or () if isinstance(t, dict)]
    marks = [(i, ttl) for i, (_, ttl) in enumerate(tools + segments) if ttl is not None]
    if not marks:
        return "\n".join(text for text, _ in segments), "", ""
    ordered = [text for text, _ in tools + segments]
    cut = marks[-1][0] + 1
    hour = max((i + 1 for i, ttl in marks if ttl == "1h"), default=0)
    return "\n".join(ordered[cut:]), "\n".join(ordered[:cut]), "\n".join(ordered[:hour])


def _breakpoints(body: dict[str, Any]) -> int:
    """Validate every `cache_control` of the request (one-hour entries before five-minute ones, in the order
    tools, system, messages); returns how many there are."""
    found = []
    found_ttls: list[str] = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "cache_control" in node:
                found.append(path)
                cc = node["cache_control"]
                if not isinstance(cc, dict) or cc.get("type") != "ephemeral" or set(cc) - {"type", "ttl"} or \
                        cc.get("ttl", "5m") not in ("5m", "1h"):
                    raise Invalid(f"{path}.cache_control: Input should be {{'type': 'ephemeral'}} "
                                  "with an optional ttl of '5m' or '1h'")
                if cc.get("ttl") == "1h" and any(ttl == "5m" for ttl in found_ttls):
                    raise Invalid(f"{path}.cache_control.ttl: a ttl='1h' cache_control block must not come after a "
                                  "ttl='5m' cache_control block. Note that blocks are processed in the following "
                                  "order: `tools`, `system`, `messages`.")
                found_ttls.append(cc.get("ttl", "5m"))
            for key, value in node.items():
                if key not in ("cache_control", "input_schema", "input"):
                    visit(value, f"{path}.{key}" if path else key)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{path}.{i}")

    visit({k: body.get(k) for k in ("tools", "system", "messages")}, "")
    return len(found)


def pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return None
    name = choice["name"] if choice.get("type") == "tool" else tools[0]["name"]
    schema = next((t.get("input_schema") for t in tools if t.get("name") == name), None)
    return {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": name,
            "input": example_of(schema, "mock")}


def _limit(mock: MockUpstream, text: str, body: dict[str, Any]) -> tuple[str, str, str | None]:
    """Apply stop_sequences and max_tokens the way the model would: (text, stop_reason, stop_sequence)."""
    from switchboard.testing.mock_upstream import count_tokens, stopped_at, truncate_to_tokens

    cut, stop = stopped_at(text, body.get("stop_sequences") or [])
    if stop is not None:
        return cut, "stop_sequence", stop
    if count_tokens(text) > body["max_tokens"]:
        return truncate_to_tokens(text, body["max_tokens"]), "max_tokens", None
    return text, "end_turn", None


async def messages(mock: MockUpstream, request: Request, body: Any) -> Response | StreamResponse:
    from switchboard.testing.mock_upstream import count_tokens, words_of

    if not request.headers.get("x-api-key"):
        return error(401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    try:
        validate(body, request.headers)
    except Invalid as exc:
        return error(400, str(exc))
    model = body["model"]
    mock.stats.by_model[model] = mock.stats.by_model.get(model, 0) + 1
    fault = await mock.before_reply(model)
    if fault is not None:
        try:
            message = orjson.loads(fault.body)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = "injected fault"
        headers = {k: v for k, v in fault.headers.items() if k == "retry-after"}
        return error(fault.status, message, headers)
    plain, prefix, hour_prefix = prompt_parts(body)
    pages = sum(document_text(b)[1] for m in body["messages"] if isinstance(m["content"], list)
                for b in m["content"] if b.get("type") == "document")
    prefix_tokens, input_tokens = count_tokens(prefix), count_tokens(plain) + pages
    window = mock.behaviour(model).context_window
    if window is not None and input_tokens + prefix_tokens > window:
        return error(400, f"prompt is too long: {input_tokens + prefix_tokens} tokens > {window} maximum")
    key = (model, hashlib.sha256(prefix.encode()).digest())
    cache_read = prefix_tokens if prefix and key in mock.prompt_cache else 0
    cache_write = prefix_tokens - cache_read
    cache_write_1h = min(count_tokens(hour_prefix), cache_write)  # written up to the last one-hour breakpoint
    if prefix:
        mock.prompt_cache.add(key)
    tool = pick_tool(body)
    text, stop_reason, stop_sequence = _limit(mock, mock.reply_for(model, prefix + plain), body)
    if tool is not None:
        text, stop_reason, stop_sequence = "", "tool_use", None
    if getattr(mock.behaviour(model), "safety_block", None):  # Claude's classifiers stopped the answer
        tool, text, stop_reason, stop_sequence = None, "I can't help with that.", "refusal", None
    thought = f"The user wants {len(plain.split())} words answered; think it through." if _thinking_on(body) else ""
    output_tokens = (count_tokens(text) if tool is None else 12) + count_tokens(thought)
    usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
             "cache_read_input_tokens": cache_read, "output_tokens": output_tokens,
             "cache_creation": {"ephemeral_5m_input_tokens": cache_write - cache_write_1h,
                                "ephemeral_1h_input_tokens": cache_write_1h}}
    mid = "msg_" + uuid.uuid4().hex[:24]
    behaviour = mock.behaviour(model)
    if body.get("stream"):
        return StreamResponse(_stream(mock, model, mid, text, tool, stop_reason, stop_sequence, usage, thought))
    await mock.pace_first(behaviour)
    if behaviour.tokens_per_second:
        await asyncio.sleep(len(words_of(text)) / behaviour.tokens_per_second)
    mock.account(input_tokens + prefix_tokens, output_tokens)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    if tool is not None:
        content.append(tool)
    if thought:
        content.insert(0, {"type": "thinking", "thinking": thought, "signature": signature_of(thought)})
    return Response(200, orjson.dumps({
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage}))


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


async def _stream(mock: MockUpstream, model: str, mid: str, text: str, tool: dict[str, Any] | None,
                  stop_reason: str, stop_sequence: str | None, usage: dict[str, Any],
                  thought: str = "") -> AsyncIterator[bytes]:
    from switchboard.testing.mock_upstream import words_of

    behaviour = mock.behaviour(model)
    cut = mock.cut_after(model)
    await mock.pace_first(behaviour)
    start_usage = {**usage, "output_tokens": 1}
    yield _event("message_start", {"message": {"id": mid, "type": "message", "role": "assistant", "model": model,
                                               "content": [], "stop_reason": None, "stop_sequence": None,
                                               "usage": start_usage}})
    sent = 1
    index = 0
    if thought:
        yield _event("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                            "signature": ""}})
        for piece in words_of(thought):
            yield _event("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": piece}})
        yield _event("content_block_delta", {"index": 0, "delta": {"type": "signature_delta",
                                                                   "signature": signature_of(thought)}})
        yield _event("content_block_stop", {"index": 0})
        index = 1
    if text:
        yield _event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
        yield _event("ping", {})
        for piece in words_of(text):
            if cut is not None and sent >= cut.after_chunks:
                mock.stats.faults += 1
                if cut.kind == "error":  # e.g. overloaded_error in the middle of a stream
                    yield _event("error", {"error": {"type": _ERROR_TYPES.get(cut.status, "api_error"),
                                                     "message": cut.message}})
                if cut.kind in ("end", "error"):  # the body ends cleanly, unfinished
                    return
                raise AbortConnection()
            if behaviour.tokens_per_second:
                await asyncio.sleep(1.0 / behaviour.tokens_per_second)
            yield _event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
            sent += 1
        yield _event("content_block_stop", {"index": index})
        index += 1
    if tool is not None:
        yield _event("content_block_start", {"index": index, "content_block": {**tool, "input": {}}})
        arguments = orjson.dumps(tool["input"]).decode()
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            yield _event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                           "partial_json": part}})
        yield _event("content_block_stop", {"index": index})
    yield _event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                   "usage": {"output_tokens": usage["output_tokens"]}})
    mock.account(usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"],
                 usage["output_tokens"])
    yield _event("message_stop", {})
