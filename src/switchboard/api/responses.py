"""The OpenAI Responses ingress: `POST /v1/responses` (JSON and SSE), served by any configured model.

The request is translated to the canonical form and served by the same
pipeline as chat completions (auth, limits, routing, fallbacks, accounting);
the answer is translated back into a Response or the Responses stream events.
Errors are OpenAI's `{"error": {...}}`; a failure in the middle of a stream
becomes an `error` event followed by `response.failed`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.api.openai import _reject, error_response, parse_json
from switchboard.context import RequestContext
from switchboard.core import responses_format as fmt
from switchboard.core.request import ChatRequest
from switchboard.errors import GatewayError, NotFound
from switchboard.http.server import Request, Response, StreamResponse

if TYPE_CHECKING:
    from switchboard.app import Gateway


async def create(gw: Gateway, request: Request) -> Response | StreamResponse:
    ctx = RequestContext("responses", "chat")
    try:
        ctx.identity = await gw.auth.authenticate(request.headers)
        body = parse_json(request)
        chat = ChatRequest.from_body(fmt.to_canonical(body))
        shell = fmt.Shell(body, chat.model)
        replayed = await gw.admission.begin_idempotent(  # Idempotency-Key: the first answer, as a Response
            ctx, request, render=lambda stored: orjson.dumps(fmt.to_response(orjson.loads(stored), shell)),
            render_stream=lambda chunks: render_stream(chunks, fmt.EventWriter(shell)))
    except GatewayError as exc:
        return _reject(gw, ctx, exc)
    if replayed is not None:
        return replayed
    try:
        if chat.stream:
            chunks = await gw.pipeline.chat_stream(chat, ctx, request.headers)
            return StreamResponse(render_stream(chunks, fmt.EventWriter(shell)), headers=ctx.headers)
        completion = await gw.pipeline.chat(chat, ctx, request.headers)
    except GatewayError as exc:
        return error_response(exc, ctx)
    return Response(200, orjson.dumps(fmt.to_response(completion, shell)), ctx.headers)


async def render_stream(chunks: AsyncIterator[dict[str, Any]], writer: fmt.EventWriter) -> AsyncIterator[bytes]:
    try:
        async for data in fmt.to_events(chunks, writer):
            yield data
    except GatewayError as exc:  # StreamFailed, or a failure while settling after the last chunk
        yield writer.failure_events(exc.code or exc.type, exc.message)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def retrieve(gw: Gateway, request: Request) -> Response:
    """`GET /v1/responses/{id}` and friends: nothing is stored, so every id is unknown (in OpenAI's 404 shape)."""
    await gw.auth.authenticate(request.headers)
    raise NotFound("This gateway does not store responses (every response says \"store\": false), so "
                   f"{request.path.rsplit('/', 1)[-1]!r} cannot be retrieved.", param="response_id")


def openapi_paths() -> dict[str, Any]:
    """This ingress's entries for the OpenAPI document."""
    from switchboard.api.openapi import _errors, _json

    return {"/v1/responses": {"post": {
        "operationId": "createResponse",
        "summary": "OpenAI Responses API (JSON or SSE stream), served by any configured model; stateless",
        "security": [{"bearer": []}],
        "requestBody": {"required": True, **_json({
            "type": "object", "required": ["model", "input"], "properties": {
                "model": {"type": "string"},
                "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                "instructions": {"type": "string"}, "max_output_tokens": {"type": "integer", "minimum": 16},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "tools": {"type": "array", "items": {"type": "object"}},
                "tool_choice": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                "parallel_tool_calls": {"type": "boolean"}, "text": {"type": "object"},
                "stream": {"type": "boolean"}, "metadata": {"type": "object"}, "user": {"type": "string"}}})},
        "responses": {"200": {"description": "A Response, or an SSE stream of Responses events when stream=true",
                              **_json({"type": "object", "required": ["id", "object", "status", "output"]})},
                      **_errors(400, 401, 402, 403, 404, 413, 429, 502, 503, 504)}}}}
