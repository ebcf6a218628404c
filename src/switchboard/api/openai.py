"""The OpenAI ingress: `/v1/chat/completions`, `/v1/completions` (legacy), `/v1/embeddings`, `/v1/models`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from switchboard.config import ModelConfig
from switchboard.context import RequestContext
from switchboard.core.request import ChatRequest, validate_embeddings_body
from switchboard.errors import GatewayError, InvalidRequest, ModelNotFound
from switchboard.http.server import Request, Response, StreamResponse
from switchboard.http.sse import DONE
from switchboard.wildcards import allowed

if TYPE_CHECKING:
    from switchboard.accounting.auth import Identity
    from switchboard.app import Gateway


def parse_json(request: Request) -> Any:
    if not request.body:
        raise InvalidRequest("The request body is empty: send a JSON object.")
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None


def error_response(exc: GatewayError, ctx: RequestContext) -> Response:
    return Response(exc.status, exc.body(), {**ctx.headers, **exc.headers})


def _reject(gw: Gateway, ctx: RequestContext, exc: GatewayError) -> Response:
    """A request refused before the pipeline took it: still logged."""
    if ctx.identity is not None:
        ctx.entry.key_id = ctx.identity.key_id
    gw.pipeline.fail(ctx, exc)
    gw.pipeline.settle(ctx)
    return error_response(exc, ctx)


async def chat_completions(gw: Gateway, request: Request) -> Response | StreamResponse:
    return await _serve_chat(gw, request, RequestContext("openai", "chat"), ChatRequest.from_body)


async def completions(gw: Gateway, request: Request) -> Response | StreamResponse:
    """The legacy Completions API, served as a one-message chat (core/completions_format.py)."""
    from switchboard.core import completions_format as legacy

    return await _serve_chat(gw, request, RequestContext("openai", "completions"),
                             lambda body: ChatRequest.from_body(legacy.to_chat(body)),
                             legacy.to_completion, legacy.to_chunks)


async def _serve_chat(gw: Gateway, request: Request, ctx: RequestContext, parse: Callable[[Any], ChatRequest],
                      shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                      shape_stream: Callable[[AsyncIterator[dict[str, Any]]], AsyncIterator[dict[str, Any]]] | None
                      = None) -> Response | StreamResponse:
    """A chat served by the pipeline and answered in OpenAI's shapes: the chat completion's, or another
    (`shape`, `shape_stream`) made from it."""
    def sse(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        return render_stream(shape_stream(chunks) if shape_stream is not None else chunks)

    try:
        ctx.identity = await gw.auth.authenticate(request.headers)
        chat = parse(parse_json(request))
        replayed = await gw.admission.begin_idempotent(  # Idempotency-Key: the first answer, once
            ctx, request,
            render=None if shape is None else lambda body, _first: orjson.dumps(shape(orjson.loads(body))),
            render_stream=lambda chunks, _first: sse(chunks))
    except GatewayError as exc:
        return _reject(gw, ctx, exc)
    if replayed is not None:
        return replayed
    try:
        if chat.stream:
            return StreamResponse(sse(await gw.pipeline.chat_stream(chat, ctx, request.headers)), headers=ctx.headers)
        result = await gw.pipeline.chat(chat, ctx, request.headers)
    except GatewayError as exc:
        return error_response(exc, ctx)
    return Response(200, orjson.dumps(shape(result) if shape is not None else result), ctx.headers)


async def render_stream(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """OpenAI's SSE framing; a failure after the first chunk becomes an `error` event (the SDK raises on it)."""
    try:
        async for chunk in chunks:
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield DONE
    except GatewayError as exc:  # StreamFailed, or a failure while settling after the last chunk
        yield b"data: " + exc.body() + b"\n\n"
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def embeddings(gw: Gateway, request: Request) -> Response:
    ctx = RequestContext("openai", "embeddings")
    try:
        ctx.identity = await gw.auth.authenticate(request.headers)
        body = parse_json(request)
        validate_embeddings_body(body)
        replayed = await gw.admission.begin_idempotent(ctx, request)
    except GatewayError as exc:
        return _reject(gw, ctx, exc)
    if replayed is not None:
        return replayed
    try:
        result = await gw.pipeline.embeddings(body, ctx, request.headers)
    except GatewayError as exc:
        return error_response(exc, ctx)
    return Response(200, orjson.dumps(result), ctx.headers)


def _model_object(gw: Gateway, model: ModelConfig) -> dict[str, Any]:
    name = model.name
    return {"id": name, "object": "model", "created": gw.started_at, "owned_by": model.deployments[0].provider,
            # USD per million tokens, so clients (e.g. `switchboard compare`) can price streamed answers.
            "pricing": {"input_per_mtok": model.pricing.input_per_mtok, "output_per_mtok": model.pricing.output_per_mtok}}


async def list_models(gw: Gateway, request: Request) -> Response:
    identity = await gw.auth.authenticate(request.headers)
    data = [_model_object(gw, model) for model in (*gw.config.models.values(), *gw.wildcards.made.values())
            if _visible(identity, model.name)]
    data += [{"id": name, "object": "model", "created": gw.started_at, "owned_by": "switchboard-router"}
             for name in gw.virtual_models() if _visible(identity, name)]
    return Response(200, orjson.dumps({"object": "list", "data": data}))


async def retrieve_model(gw: Gateway, request: Request) -> Response:
    identity = await gw.auth.authenticate(request.headers)
    name = unquote(request.path[len("/v1/models/"):].rstrip("/"))  # SDKs send "openai/gpt-4o" as openai%2Fgpt-4o
    if _visible(identity, name):
        model = gw.pipeline.peek(name)
        if model is not None:
            return Response(200, orjson.dumps(_model_object(gw, model)))
        if name in gw.virtual_models():
            return Response(200, orjson.dumps({"id": name, "object": "model", "created": gw.started_at,
                                               "owned_by": "switchboard-router"}))
    raise ModelNotFound(f"The model {name!r} does not exist or you do not have access to it.", param="model")


def _visible(identity: Identity, name: str) -> bool:
    """Whether a key may see a model: listing and retrieving follow its `allowed_models`, as serving does."""
    return identity.allowed_models is None or allowed(name, identity.allowed_models)



