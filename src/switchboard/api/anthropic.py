"""The Anthropic ingress: `POST /v1/messages` (JSON and SSE) and `POST /v1/messages/count_tokens`.

Clients that speak Anthropic's Messages API reach every configured model, not
only Claude: the request is translated to the canonical form, served by the
same pipeline as OpenAI-format traffic (auth, limits, routing, fallbacks,
accounting), and the answer is translated back. Errors, including a failure
in the middle of a stream, come back in Anthropic's error shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.accounting.tokens import estimate_tokens
from switchboard.api.input_tokens import counted_model, input_tokens
from switchboard.api.openai import parse_json
from switchboard.context import RequestContext
from switchboard.core import anthropic_format as fmt
from switchboard.core.request import MAX_STOP_LENGTH, ChatRequest
from switchboard.errors import GatewayError
from switchboard.http.server import Request, Response, StreamResponse

if TYPE_CHECKING:
    from switchboard.app import Gateway

log = logging.getLogger(__name__)


def error_response(exc: GatewayError, ctx: RequestContext | None = None) -> Response:
    headers = {**(ctx.headers if ctx else {}), **exc.headers}
    if ctx is not None:
        headers["request-id"] = ctx.request_id
    return Response(exc.status, orjson.dumps(fmt.error_payload(exc.status, exc.message)), headers)


def _canonical(request: Request) -> ChatRequest:
    body = fmt.to_canonical(parse_json(request))
    betas = [b.strip() for b in request.headers.get("anthropic-beta", "").split(",") if b.strip()]
    if betas:  # beta features reach a Claude upstream (providers/anthropic.py, bedrock.py); others ignore them
        body["anthropic_beta"] = betas
    return ChatRequest.from_body(body, max_stops=fmt.MAX_STOP_SEQUENCES)


async def messages(gw: Gateway, request: Request) -> Response | StreamResponse:
    ctx = RequestContext("anthropic", "chat")
    try:
        ctx.identity = await gw.auth.authenticate(request.headers)
        chat = _canonical(request)
        replayed = await gw.admission.begin_idempotent(  # Idempotency-Key: the first answer, as a Message
            ctx, request, render=lambda body, _origin: orjson.dumps(fmt.to_message(orjson.loads(body), chat.model)),
            render_stream=lambda chunks, _origin: render_stream(
                chunks, fmt.EventWriter(chat.model, estimate_tokens(chat.prompt_text()))))
    except GatewayError as exc:
        if ctx.identity is not None:
            ctx.entry.key_id = ctx.identity.key_id
        gw.pipeline.fail(ctx, exc)
        gw.pipeline.settle(ctx)
        return error_response(exc, ctx)
    if replayed is not None:
        return replayed
    try:
        if chat.stream:
            chunks = await gw.pipeline.chat_stream(chat, ctx, request.headers)
            writer = fmt.EventWriter(chat.model, estimate_tokens(chat.prompt_text()))
            ctx.headers["request-id"] = ctx.request_id
            return StreamResponse(render_stream(chunks, writer), headers=ctx.headers)
        completion = await gw.pipeline.chat(chat, ctx, request.headers)
    except GatewayError as exc:
        return error_response(exc, ctx)
    except Exception:  # a bug (logged and settled by the pipeline): still a 500 in Anthropic's shape
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return error_response(GatewayError("internal error"), ctx)
    ctx.headers["request-id"] = ctx.request_id
    return Response(200, orjson.dumps(fmt.to_message(completion, chat.model)), ctx.headers)


async def render_stream(chunks: AsyncIterator[dict[str, Any]], writer: fmt.EventWriter) -> AsyncIterator[bytes]:
    """Anthropic's SSE events; a failure after the first event becomes an `error` event (the SDK raises on it)."""
    try:
        async for data in fmt.to_events(chunks, writer):
            yield data
    except GatewayError as exc:  # StreamFailed, or a failure while settling after the last chunk
        yield fmt.sse("error", fmt.error_payload(exc.status, exc.message))
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def count_tokens(gw: Gateway, request: Request) -> Response:
    """The prompt's input tokens (api/input_tokens.py), in Anthropic's shape."""
    try:
        identity = await gw.auth.authenticate(request.headers)
        body = parse_json(request)
        if isinstance(body, dict):  # count_tokens takes no max_tokens; the Messages checks want one above the budget
            thinking = body.get("thinking")
            budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
            body = {**body, "max_tokens": budget + 1 if isinstance(budget, int) and budget > 0 else 1}
        chat = ChatRequest(fmt.to_canonical(body))
        model = counted_model(gw, chat, identity)
    except GatewayError as exc:
        return error_response(exc)
    return Response(200, orjson.dumps({"input_tokens": await input_tokens(chat, model)}))


_ERROR = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"},
    "error": {"type": "object", "required": ["type", "message"], "properties": {
        "type": {"type": "string"}, "message": {"type": "string"}}}}}


def openapi_paths() -> dict[str, Any]:
    """This ingress's entries for the OpenAPI document."""
    errors = {str(code): {"description": desc, "content": {"application/json": {"schema": _ERROR}}}
              for code, desc in ((400, "Invalid request"), (401, "Missing or wrong API key"),
                                 (402, "Credit exhausted"), (403, "Not allowed"), (404, "Unknown model"),
                                 (429, "Rate limited"), (502, "Upstream failure"), (503, "Overloaded"),
                                 (504, "Upstream timeout"))}
    security = [{"bearer": []}]
    return {
        "/v1/messages": {"post": {
            "operationId": "createMessage",
            "summary": "Anthropic Messages API (JSON or SSE stream), served by any configured model",
            "security": security,
            "parameters": [{"name": "x-api-key", "in": "header", "required": False, "schema": {"type": "string"}},
                           {"name": "anthropic-version", "in": "header", "required": False,
                            "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["model", "messages", "max_tokens"], "properties": {
                    "model": {"type": "string"}, "max_tokens": {"type": "integer", "minimum": 1},
                    "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role", "content"]}},
                    "system": {"oneOf": [{"type": "string"}, {"type": "array"}]},
                    "stop_sequences": {"type": "array", "items": {"type": "string", "maxLength": MAX_STOP_LENGTH},
                                       "maxItems": fmt.MAX_STOP_SEQUENCES},
                    "stream": {"type": "boolean"}, "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                    "top_p": {"type": "number"}, "tools": {"type": "array"}, "tool_choice": {"type": "object"},
                    "metadata": {"type": "object"}}}}}},
            "responses": {"200": {"description": "A Message, or an SSE stream of Anthropic events when stream=true",
                                  "content": {"application/json": {"schema": {"type": "object", "required": [
                                      "id", "type", "role", "content", "model", "stop_reason", "usage"]}},
                                      "text/event-stream": {"schema": {"type": "string"}}}},
                          **errors}}},
        "/v1/messages/count_tokens": {"post": {
            "operationId": "countMessageTokens", "summary": "Estimated input tokens of a Messages request",
            "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "The estimate", "content": {"application/json": {"schema": {
                "type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}}}}},
                **{k: v for k, v in errors.items() if k in ("400", "401", "404")}}}},
    }
