"""Executing a plan of attempts: try deployments until one answers.

Only retryable failures (rate limits, overload, 5xx, timeouts, dropped
connections) move on to the next deployment; anything else is the caller's
error and is returned at once. For streams, failover is possible only until
the first chunk has arrived: after that the chunk may already be with the client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from switchboard.config import Deployment, ModelConfig
from switchboard.context import RequestContext
from switchboard.core.request import ChatRequest
from switchboard.errors import ServiceUnavailable, UpstreamError
from switchboard.providers.base import Provider

if TYPE_CHECKING:
    from switchboard.app import Gateway

Call = Callable[[Provider, Deployment], Awaitable[dict[str, Any]]]


class Executor:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def run(self, model: ModelConfig, ctx: RequestContext, call: Call) -> tuple[dict[str, Any], ModelConfig, Deployment]:
        """Walk the attempt plan until a deployment answers."""
        last: UpstreamError | None = None
        for target, dep in self.gw.planner.plan(model):
            provider = self.gw.providers.get(dep.provider)
            started = time.perf_counter()
            try:
                response = await call(provider, dep)
            except UpstreamError as exc:
                note_attempt(ctx, dep, exc, started)
                last = exc
                if not exc.retryable:
                    raise
                continue
            note_attempt(ctx, dep, None, started)
            return response, target, dep
        raise last or ServiceUnavailable(f"No deployment of {model.name!r} is available.")

    async def open_stream(self, request: ChatRequest, model: ModelConfig, ctx: RequestContext,
                          ) -> tuple[AsyncIterator[dict[str, Any]], dict[str, Any] | None, ModelConfig, Deployment]:
        """Open a stream on the first deployment that delivers a first chunk."""
        last: UpstreamError | None = None
        for target, dep in self.gw.planner.plan(model):
            provider = self.gw.providers.get(dep.provider)
            started = time.perf_counter()
            upstream = provider.chat_stream(request, dep)
            try:
                first = await upstream.__anext__()
            except StopAsyncIteration:
                first = None
            except UpstreamError as exc:
                await upstream.aclose()
                note_attempt(ctx, dep, exc, started)
                last = exc
                if not exc.retryable:
                    raise
                continue
            except BaseException:
                await upstream.aclose()
                raise
            note_attempt(ctx, dep, None, started)
            return upstream, first, target, dep
        raise last or ServiceUnavailable(f"No deployment of {model.name!r} is available.")


def note_attempt(ctx: RequestContext, dep: Deployment, exc: UpstreamError | None, started: float) -> None:
    ctx.attempt_log.append({
        "deployment": dep.id, "model": dep.model_name,
        "ms": round((time.perf_counter() - started) * 1000.0, 3),
        "error": None if exc is None else exc.kind, "message": None if exc is None else exc.message[:300],
    })
    ctx.entry.attempts = len(ctx.attempt_log)
    ctx.entry.model_used = dep.model_name
    ctx.entry.deployment = dep.id
    ctx.entry.provider = dep.provider
    ctx.headers["x-switchboard-model"] = dep.model_name
    ctx.headers["x-switchboard-deployment"] = dep.id
    ctx.headers["x-switchboard-attempts"] = str(len(ctx.attempt_log))
