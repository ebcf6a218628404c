"""The OpenAI Responses ingress: `/v1/responses` (JSON and SSE), served by any configured model.

The request is translated to the canonical form and served by the same
pipeline as chat completions (auth, limits, routing, fallbacks, accounting);
the answer is translated back into a Response or the Responses stream events.
Unless the request says `"store": false`, the Response is stored for its API
key (storage/responses.py): `previous_response_id` continues it,
`GET`/`DELETE /v1/responses/{id}` read and remove it, and
`GET /v1/responses/{id}/input_items` lists what it was given, and `POST /v1/responses/input_tokens` counts
a request's input tokens before it is sent. Errors are OpenAI's
`{"error": {...}}`; a failure in the middle of a stream becomes an `error`
event followed by `response.failed`, and the failed Response (the output so
far) is stored like any other: `GET` reads it, `previous_response_id` refuses
it with a 400. A stream the client hangs up on is not stored.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from switchboard.accounting.auth import Identity
from switchboard.api.input_tokens import counted_model, input_tokens
from switchboard.api.openai import _reject, error_response, parse_json
from switchboard.context import RequestContext
from switchboard.core import responses_format as fmt
from switchboard.core.request import ChatRequest
from switchboard.errors import GatewayError, InvalidRequest, NotFound
from switchboard.http.server import Request, Response, StreamResponse
from switchboard.storage.responses import BrokenChain, FailedResponse

if TYPE_CHECKING:
    from switchboard.app import Gateway

log = logging.getLogger("switchboard")

Store = Callable[[dict[str, Any]], Awaitable[None]]
_T = TypeVar("_T")


def _owner(identity: Identity) -> str:
    """Whose Responses these are: the API key's id (the master key and an open gateway have their own)."""
    return identity.key_id or ""


async def _history(gw: Gateway, body: Any, owner: str) -> list[dict[str, Any]] | None:
    previous = body.get("previous_response_id") if isinstance(body, dict) else None
    if previous is None:
        return None
    if not isinstance(previous, str) or not previous:
        raise InvalidRequest("Invalid 'previous_response_id': expected a response id.", param="previous_response_id")
    try:
        return await _chain(gw.response_store.history(previous, owner), previous, "previous_response_id",
                            ": send the conversation in `input`", "Previous response")
    except NotFound as unknown:
        # OpenAI answers an unknown previous_response_id with a 400, not a 404: the request is what is wrong.
        raise InvalidRequest(unknown.message, param="previous_response_id",
                             code="previous_response_not_found") from None


async def _chain(load: Awaitable[_T | None], response_id: str, param: str, hint: str, what: str) -> _T:
    """A stored conversation, or the error that says why not: a broken link (expired or deleted), a failed
    Response (its answer broke off: nothing to continue from), or no such id."""
    try:
        found = await load
    except BrokenChain:
        raise InvalidRequest(f"An earlier response of the conversation that {response_id!r} continues has expired "
                             f"or was deleted{hint}.", param=param) from None
    except FailedResponse:
        raise InvalidRequest(f"{what} with id {response_id!r} failed and cannot be continued{hint}.",
                             param=param) from None
    if found is None:
        raise NotFound(f"{what} with id {response_id!r} not found.", param=param)
    return found


async def create(gw: Gateway, request: Request) -> Response | StreamResponse:
    ctx = RequestContext("responses", "chat")
    try:
        ctx.identity = identity = await gw.auth.authenticate(request.headers)
        body = parse_json(request)
        owner = _owner(identity)
        history = await _history(gw, body, owner)
        canonical, turn = fmt.to_canonical(body, history)
        chat = ChatRequest.from_body(canonical)
        shell = fmt.Shell(body, chat.model, ctx.request_id)
        replayed = await gw.admission.begin_idempotent(  # Idempotency-Key: the first answer, as a Response
            ctx, request, render=lambda stored, first: orjson.dumps(fmt.to_response(orjson.loads(stored),
                                                                                    shell.of_request(first))),
            render_stream=lambda chunks, first: render_stream(chunks, fmt.EventWriter(shell.of_request(first))))
    except GatewayError as exc:
        return _reject(gw, ctx, _renamed(exc))
    if replayed is not None:
        return replayed
    store: Store | None = None
    if body.get("store", True):
        async def store(response: dict[str, Any]) -> None:
            try:
                await gw.response_store.save(response, owner, body.get("previous_response_id"),
                                             [*turn, fmt.assistant_message(response)])
            except Exception:  # the answer is paid for: it goes out even if it cannot be kept
                log.exception("storing response %s failed", response["id"])
                response["store"] = False
    try:
        if chat.stream:
            chunks = await gw.pipeline.chat_stream(chat, ctx, request.headers)
            return StreamResponse(render_stream(chunks, fmt.EventWriter(shell), store), headers=ctx.headers)
        completion = await gw.pipeline.chat(chat, ctx, request.headers)
        response = fmt.to_response(completion, shell)
        if store is not None:
            await store(response)
    except GatewayError as exc:
        return error_response(_renamed(exc), ctx)
    return Response(200, orjson.dumps(response), ctx.headers)


# What OpenAI's input-token count takes: a Responses request without its output and storage settings.
_COUNT_FIELDS = frozenset({"model", "input", "instructions", "conversation", "previous_response_id", "tools",
                           "tool_choice", "parallel_tool_calls", "reasoning", "text", "truncation", "personality"})


async def count_input_tokens(gw: Gateway, request: Request) -> Response:
    """`POST /v1/responses/input_tokens`: the input tokens of a Responses request, as `create` would send it
    (`previous_response_id` included); counted as api/input_tokens.py says."""
    identity = await gw.auth.authenticate(request.headers)
    body = parse_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    unknown = sorted(set(body) - _COUNT_FIELDS)
    if unknown:
        raise InvalidRequest(f"Unknown parameter: '{unknown[0]}'.", param=unknown[0])
    history = await _history(gw, body, _owner(identity))
    body = {k: v for k, v in body.items() if k != "personality"}  # a style preset: no tokens of its own
    try:
        if body.get("input") is None and history:  # the stored conversation alone
            canonical, turn = fmt.to_canonical({**body, "input": ""}, history)
            del canonical["messages"][-len(turn):]
        else:
            canonical, _ = fmt.to_canonical(body, history)
        chat = ChatRequest.from_body(canonical)
    except InvalidRequest as exc:
        raise _renamed(exc) from None
    count = await input_tokens(chat, counted_model(gw, chat, identity))
    return Response(200, orjson.dumps({"object": "response.input_tokens", "input_tokens": count}))


def _renamed(exc: GatewayError) -> GatewayError:
    return fmt.in_responses_terms(exc) if isinstance(exc, InvalidRequest) else exc


async def render_stream(chunks: AsyncIterator[dict[str, Any]], writer: fmt.EventWriter,
                        store: Store | None = None) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            data = writer.feed(chunk)
            if data:
                yield data
        done = writer.finish_events()
        if store is not None:  # stored before the client sees the end, so a follow-up can continue it at once
            await store(writer.final)
        yield done + writer.last_event()
    except GatewayError as exc:  # StreamFailed, or a failure while settling after the last chunk
        error = writer.failure_events(exc.code or exc.type, exc.message)
        if store is not None:  # the output so far, for GET; a follow-up is refused (see _chain)
            await store(writer.final)
        yield error + writer.last_event()
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def stored(gw: Gateway, request: Request) -> Response:
    """`GET /v1/responses/{id}` reads a stored Response, `DELETE` removes it and `GET .../input_items` lists
    what it was given; for the API key that made it."""
    owner = _owner(await gw.auth.authenticate(request.headers))
    response_id, _, rest = request.path[len("/v1/responses/"):].partition("/")
    if rest == "input_items" and request.method == "GET":
        return await _input_items(gw, request, response_id, owner)
    if rest or request.method not in ("GET", "DELETE"):
        raise NotFound(f"{request.method} /v1/responses/{{id}}/{rest} is not available through this gateway "
                       "(stored responses can be retrieved, deleted and their input items listed).")
    if request.method == "DELETE":
        if not await gw.response_store.delete(response_id, owner):
            raise NotFound(f"Response with id {response_id!r} not found.", param="response_id")
        return Response(200, orjson.dumps({"id": response_id, "object": "response", "deleted": True}))
    response = await gw.response_store.get(response_id, owner)
    if response is None:
        raise NotFound(f"Response with id {response_id!r} not found.", param="response_id")
    return Response(200, orjson.dumps(response))


async def _input_items(gw: Gateway, request: Request, response_id: str, owner: str) -> Response:
    """The input items of a stored Response (the conversation it continued, then its own input), paginated
    as OpenAI's list endpoints are: `limit` (1-100, default 20), `order` (`desc` by default), `after` an item id."""
    params = request.query_params()
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequest("Invalid 'limit': expected an integer between 1 and 100.", param="limit")
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid 'order': expected 'asc' or 'desc'.", param="order")
    turns = await _chain(gw.response_store.turns(response_id, owner), response_id, "response_id", "", "Response")
    last_id, last_turn = turns[-1]
    items = fmt.input_items([*turns[:-1], (last_id, last_turn[:-1])])  # without the Response's own answer
    if order == "desc":
        items.reverse()
    after = params.get("after")
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"Invalid 'after': no input item {after!r} in this response.", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return Response(200, orjson.dumps({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                                       "last_id": page[-1]["id"] if page else None,
                                       "has_more": len(items) > limit}))


def openapi_paths() -> dict[str, Any]:
    """This ingress's entries for the OpenAPI document."""
    from switchboard.api.openapi import _errors, _json

    response_id = {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {"/v1/responses": {"post": {
        "operationId": "createResponse",
        "summary": "OpenAI Responses API (JSON or SSE stream), served by any configured model",
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
                "stream": {"type": "boolean"}, "metadata": {"type": "object"}, "user": {"type": "string"},
                "store": {"type": "boolean"}, "previous_response_id": {"type": "string"}}})},
        "responses": {"200": {"description": "A Response, or an SSE stream of Responses events when stream=true",
                              **_json({"type": "object", "required": ["id", "object", "status", "output"]})},
                      **_errors(400, 401, 402, 403, 404, 413, 429, 502, 503, 504)}}},
        "/v1/responses/input_tokens": {"post": {
            "operationId": "countResponseInputTokens",
            "summary": "Input tokens of a Responses request, counted without sending it",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, **_json({
                "type": "object", "required": ["model"], "properties": {
                    "model": {"type": "string"},
                    "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                    "instructions": {"type": "string"}, "previous_response_id": {"type": "string"},
                    "tools": {"type": "array", "items": {"type": "object"}},
                    "tool_choice": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                    "parallel_tool_calls": {"type": "boolean"}, "text": {"type": "object"},
                    "reasoning": {"type": "object"}, "truncation": {"enum": ["auto", "disabled"]},
                    "personality": {"type": "string"}}})},
            "responses": {"200": {"description": "The count", **_json({
                "type": "object", "required": ["object", "input_tokens"], "properties": {
                    "object": {"const": "response.input_tokens"}, "input_tokens": {"type": "integer"}}})},
                **_errors(400, 401, 404, 413)}}},
        "/v1/responses/{response_id}": {
            "get": {"operationId": "getResponse", "summary": "A stored Response (the API key's own)",
                    "security": [{"bearer": []}], "parameters": [response_id],
                    "responses": {"200": {"description": "The Response", **_json(
                        {"type": "object", "required": ["id", "object", "status", "output"]})},
                                  **_errors(401, 404)}},
            "delete": {"operationId": "deleteResponse", "summary": "Delete a stored Response",
                       "security": [{"bearer": []}], "parameters": [response_id],
                       "responses": {"200": {"description": "Deleted", **_json({
                           "type": "object", "required": ["id", "object", "deleted"], "properties": {
                               "id": {"type": "string"}, "object": {"const": "response"},
                               "deleted": {"const": True}}})},
                                     **_errors(401, 404)}}},
        "/v1/responses/{response_id}/input_items": {"get": {
            "operationId": "listInputItems",
            "summary": "The input items of a stored Response: the conversation it continued, then its own input",
            "security": [{"bearer": []}],
            "parameters": [response_id,
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                       "maximum": 100, "default": 20}},
                           {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"], "default": "desc"}},
                           {"name": "after", "in": "query", "schema": {"type": "string"},
                            "description": "An item id: the page starts after it"}],
            "responses": {"200": {"description": "A page of input items", **_json({
                "type": "object", "required": ["object", "data", "first_id", "last_id", "has_more"]})},
                          **_errors(400, 401, 404)}}}}
