"""Executing a request: pick a deployment, attempt, and on failure retry, fail over or fall back.

For each attempt the balancer picks, among the deployments whose breaker lets
traffic through, one that this request has not yet seen fail; switching to
such a deployment is immediate, while going back to one that already failed
waits a jittered exponential backoff. When a model has nothing usable left
(or used `max_per_model` attempts) the request moves to its fallback models.
Only retryable failures (rate limits, overload, 5xx, timeouts, dropped
connections) and deployment faults (upstream auth, unknown upstream model)
move on; a context-window error switches to the long-context chain, a
content-policy refusal to the policy chain, anything else is the caller's
error and is returned at once. A request never exceeds its retry budget
(`max_attempts`) or its `deadline`.

For streams, failover is possible only until the first chunk that says
something has arrived (text, a tool call, reasoning, a finish; not the role
alone, which Claude sends before it can still fail with `overloaded_error`):
after that the chunk may already be with the client, and a failure ends the
stream (pipeline.py renders the error event). See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from switchboard import errors
from switchboard.accounting.tokens import estimate_tokens, usage_of
from switchboard.config import Deployment, ModelConfig
from switchboard.context import RequestContext
from switchboard.core.request import ChatRequest
from switchboard.errors import ServiceUnavailable, UpstreamError
from switchboard.metrics import GatewayMetrics, openapi_paths
from switchboard.providers.base import Provider
from switchboard.routing.attempts import CONTEXT, GENERAL, POLICY
from switchboard.routing.balancing import Balancer
from switchboard.routing.health import CLOSED, STATE_NAMES, Breaker, Health, RedisHealthSync
from switchboard.routing.shared_health import SharedHealthSync
from switchboard.routing.hedging import hedge_delay, race

if TYPE_CHECKING:
    from switchboard.app import Gateway

Call = Callable[[Provider, Deployment], Awaitable[dict[str, Any]]]

# Failures that say something is wrong with the deployment (they count against its breaker).
HEALTH_FAILURES = frozenset({errors.RATE_LIMIT, errors.OVERLOADED, errors.SERVER, errors.TIMEOUT,
                             errors.CONNECTION, errors.AUTH, errors.PAYMENT, errors.NOT_FOUND})
# Not retryable on the same deployment, but another deployment may well work.
DEPLOYMENT_FAULTS = frozenset({errors.AUTH, errors.PAYMENT, errors.NOT_FOUND})


class _Unary:
    """One non-streamed call: the provider's whole answer."""

    stream = False

    def __init__(self, call: Call) -> None:
        self.fn = call

    async def call(self, provider: Provider, dep: Deployment, deadline: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        if deadline - loop.time() >= dep.timeouts.total:
            return await self.fn(provider, dep)
        try:
            async with asyncio.timeout_at(deadline):
                return await self.fn(provider, dep)
        except TimeoutError:
            raise UpstreamError(errors.TIMEOUT, f"{dep.id}: the request's deadline passed") from None

    @staticmethod
    def tokens(result: dict[str, Any]) -> int:
        usage = usage_of(result)
        return usage[0] + usage[1] if usage else 0

    @staticmethod
    async def discard(result: Any) -> None:
        return None


class _Stream:
    """Opening a stream: the attempt is over when its first chunk that says something arrives (within the `ttft`
    timeout); the role-only chunks before it are held and come first in the stream returned."""

    stream = True

    def __init__(self, request: ChatRequest) -> None:
        self.request = request

    async def call(self, provider: Provider, dep: Deployment, deadline: float) -> tuple[AsyncIterator, Any]:
        loop = asyncio.get_running_loop()
        limit = deadline
        if dep.ttft is not None:
            limit = min(limit, loop.time() + dep.ttft)
        upstream = provider.chat_stream(self.request, dep)
        held: list[Any] = []
        try:
            if limit - loop.time() >= dep.timeouts.total:
                await _hold_preamble(upstream, held)
            else:
                async with asyncio.timeout_at(limit):
                    await _hold_preamble(upstream, held)
        except TimeoutError:
            await upstream.aclose()
            what = f"no first chunk within {dep.ttft:g}s" if limit < deadline else "the request's deadline passed"
            raise UpstreamError(errors.TIMEOUT, f"{dep.id}: {what}") from None
        except BaseException:
            await upstream.aclose()
            raise
        if not held:  # not even a role: an answer that is no answer (some proxies' way to say they failed)
            raise UpstreamError(errors.SERVER, f"{dep.id}: the stream ended before its first chunk")
        if len(held) > 1:
            return _Prefixed(held[1:], upstream), held[0]
        return upstream, held[0]

    @staticmethod
    def tokens(result: Any) -> int:
        return 0  # counted when the stream ends

    @staticmethod
    async def discard(result: _OwnedStream) -> None:
        await result.release()


class Executor:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.rng = random.Random()
        self.balancer = Balancer(self.rng)
        self.health = Health(gateway.config)
        self.sync: RedisHealthSync | None = None
        metrics: GatewayMetrics | None = getattr(gateway, "metrics", None)
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        gateway.openapi_extensions = [*getattr(gateway, "openapi_extensions", []), openapi_paths]
        self.health.listeners.append(
            lambda dep_id, state, _until, _why: self.metrics.breaker_transitions.inc((dep_id, STATE_NAMES[state])))
        self.metrics.add_gauge("switchboard_breaker_state", "Circuit state per deployment: 0 closed, 1 half-open, 2 open.",
                               ("deployment",), lambda: {(d,): float(s) for d, s in self.health.states().items()})
        self.metrics.add_gauge("switchboard_deployment_in_flight", "Attempts in flight per deployment.",
                               ("deployment",), lambda: {(d,): float(s.in_flight) for d, s in self.balancer.stats.items()})

    async def start(self) -> None:
        url = self.gw.config.storage.redis_url
        if url is not None:
            self.sync = RedisHealthSync(self.health, url.reveal(), self.gw.config.redis_namespace)
            await self.sync.start()
        elif getattr(self.gw, "shared_breakers", None) is not None:
            SharedHealthSync(self.health, self.gw.shared_breakers).start()

    async def close(self) -> None:
        if self.sync is not None:
            await self.sync.close()

    # ------------------------------------------------------------ entry points

    async def run(self, model: ModelConfig, ctx: RequestContext, call: Call, *, request: ChatRequest | None = None,
                  fallbacks: Sequence[ModelConfig] = ()) -> tuple[dict[str, Any], ModelConfig, Deployment]:
        """Serve a non-streamed call; `request` (when given) lets an over-long prompt skip to the context chain;
        `fallbacks` come after the model's own (a router's strong model after its weak one)."""
        return await self._execute(model, ctx, _Unary(call), request, fallbacks)

    async def open_stream(self, request: ChatRequest, model: ModelConfig, ctx: RequestContext,
                          fallbacks: Sequence[ModelConfig] = (),
                          ) -> tuple[AsyncIterator[dict[str, Any]], dict[str, Any], ModelConfig, Deployment]:
        """Open a stream on the first deployment that delivers a first chunk."""
        owned, target, dep = await self._execute(model, ctx, _Stream(request), request, fallbacks)
        return _WatchedStream(self, owned, dep), owned.first, target, dep

    # ------------------------------------------------------------ the walk

    async def _execute(self, model: ModelConfig, ctx: RequestContext, kind: Any, request: ChatRequest | None,
                       fallbacks: Sequence[ModelConfig] = ()) -> tuple[Any, ModelConfig, Deployment]:
        self.metrics.in_flight += 1
        served = False
        policy = model.reliability.retries
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.deadline
        planner = self.gw.planner
        models = [model, *planner.chain(model, GENERAL)]
        models += [m for m in fallbacks if all(m.name != n.name for n in models)]
        if request is not None and model.context_window and model.context_fallbacks:
            estimate = estimate_tokens(request.prompt_text())
            if estimate > model.context_window:
                chain = planner.chain(model, CONTEXT)
                if chain:
                    self._note_fallback(ctx, model, chain[0], "context_window_estimate")
                    ctx.entry.extra["estimated_prompt_tokens"] = estimate
                    models = chain
        state = _Walk()
        last: UpstreamError | None = None
        visited: set[str] = set()
        i = 0
        try:
            while i < len(models) and state.attempts < policy.max_attempts and loop.time() < deadline:
                target = models[i]
                i += 1
                if target.name in visited:
                    continue
                visited.add(target.name)
                limit = policy.max_per_model if i < len(models) else policy.max_attempts
                source, before = state.current, state.attempts
                state.current = source or target  # the model asked for, then the last one tried
                try:
                    try:
                        found = await self._on_model(target, ctx, kind, state, limit, policy, deadline)
                    finally:  # a fallback is a model that was tried: one whose breakers were all open was not
                        if state.attempts > before:
                            if source is not None and source is not target:
                                self._note_fallback(ctx, source, target, state.reason)
                            state.current = target
                except UpstreamError as exc:
                    last = exc
                    if exc.kind == errors.CONTEXT_LENGTH:
                        switch = CONTEXT
                    elif exc.kind == errors.CONTENT_POLICY:
                        switch = POLICY
                    else:
                        raise
                    chain = [m for m in planner.chain(target, switch) if m.name not in visited]
                    if not chain:
                        raise
                    models, i, state.reason = chain, 0, switch
                    continue
                if found is not None:
                    served = True
                    return found
                last = state.last or last
                state.reason = GENERAL
            if state.attempts == 0 and loop.time() < deadline:
                found = await self._last_resort(models[0] if models else model, ctx, kind, state, deadline)
                if found is not None:
                    served = True
                    return found
                last = state.last or last
            if last is not None:
                raise last
            now = time.monotonic()
            reopens = [b.until - now for m in models for d in m.deployments
                       if (b := self.health.breaker(d)).until > now]
            # None reopens later: each is half-open with its probes out, which answer within seconds.
            retry_after = max(1, math.ceil(min(reopens))) if reopens else 1
            raise ServiceUnavailable(f"No deployment of {model.name!r} is available right now (all are cooling down); "
                                     "try again shortly.", headers={"retry-after": str(retry_after)})
        finally:
            if not (served and kind.stream):  # a served stream stays in flight until it ends
                self.metrics.in_flight -= 1
            if state.attempts > 1:
                self.metrics.retries.inc((model.name,), state.attempts - 1)

    async def _on_model(self, target: ModelConfig, ctx: RequestContext, kind: Any, state: _Walk, limit: int,
                        policy: Any, deadline: float) -> tuple[Any, ModelConfig, Deployment] | None:
        """Attempts on one model. Returns a success, None to move on, or raises to switch chains/stop."""
        loop = asyncio.get_running_loop()
        failed: dict[str, int] = {}
        on_model = 0
        hedge = target.reliability.hedge
        if hedge is not None and kind.stream and not hedge.streams:
            hedge = None
        while state.attempts < policy.max_attempts and on_model < limit and loop.time() < deadline:
            dep = self._pick(target, failed, kind.stream)
            if dep is None:
                return None
            if dep.id in failed:
                delay = policy.backoff(on_model - 1, self.rng.random())
                if loop.time() + delay >= deadline:
                    return None
                if delay > 0:
                    await asyncio.sleep(delay)
                if not self.health.available(dep, time.monotonic()):
                    continue
            try:
                if hedge is not None and state.attempts + 1 < policy.max_attempts and len(target.deployments) > 1:
                    result, dep = await self._hedged(target, dep, ctx, kind, state, failed, deadline, hedge)
                else:
                    state.attempts += 1
                    result = await self._attempt(target, dep, ctx, kind, failed, deadline)
            except UpstreamError as exc:
                on_model += 1
                state.last = exc
                if exc.kind in (errors.CONTEXT_LENGTH, errors.CONTENT_POLICY):
                    raise
                if not (exc.retryable or exc.kind in DEPLOYMENT_FAULTS):
                    raise
                continue
            _served(ctx, target, dep)
            return result, target, dep
        return None

    def _pick(self, model: ModelConfig, failed: dict[str, int], stream: bool) -> Deployment | None:
        now = time.monotonic()
        health = self.health
        usable = [d for d in model.deployments if health.available(d, now)
                  and not (d.id in failed and self._dead_for_request(d, failed))]
        if not usable:
            return None
        fresh = [d for d in usable if d.id not in failed]
        return self.balancer.pick(model, fresh or usable, stream)

    @staticmethod
    def _dead_for_request(dep: Deployment, failed: dict[str, int]) -> bool:
        """Deployment faults (bad key, unknown model) do not heal within a request: never retry those."""
        return failed.get(dep.id, 0) < 0

    async def _hedged(self, target: ModelConfig, dep: Deployment, ctx: RequestContext, kind: Any, state: _Walk,
                      failed: dict[str, int], deadline: float, hedge: Any) -> tuple[Any, Deployment]:
        deps = [dep]
        state.attempts += 1

        def second() -> Awaitable[Any] | None:
            other = self._pick(target, {**failed, dep.id: 1}, kind.stream)
            if other is None or other.id == dep.id or loop.time() >= deadline:
                return None
            deps.append(other)
            state.attempts += 1
            return self._attempt(target, other, ctx, kind, failed, deadline, hedge=True)

        loop = asyncio.get_running_loop()
        delay = hedge_delay(hedge, self.balancer.of(dep))
        result, winner, started = await race(self._attempt(target, dep, ctx, kind, failed, deadline), second, delay,
                                             kind.discard)
        if started > 1:
            self.metrics.hedges.inc((target.name, "hedge" if winner == 1 else "first"))
            ctx.entry.extra["hedged"] = {"winner": deps[winner].id, "loser": deps[1 - winner].id}
        return result, deps[winner]

    async def _attempt(self, target: ModelConfig, dep: Deployment, ctx: RequestContext, kind: Any,
                       failed: dict[str, int], deadline: float, *, hedge: bool = False) -> Any:
        """One attempt on one deployment, with its health, load and metrics bookkeeping."""
        provider = self.gw.providers.get(dep.provider)
        stats = self.balancer.of(dep)
        breaker = self.health.breaker(dep)
        began_closed = breaker.state == CLOSED
        probe = breaker.begin()
        stats.in_flight += 1
        limited = dep.rpm is not None or dep.tpm is not None
        if limited:
            stats.count_request(time.time())
        started = time.perf_counter()
        keep_in_flight = False
        try:
            result = await kind.call(provider, dep, deadline)
            keep_in_flight = kind.stream
        except UpstreamError as exc:
            now = time.monotonic()
            if exc.kind in HEALTH_FAILURES:
                breaker.failure(now, exc.retry_after if exc.kind == errors.RATE_LIMIT else None)
            else:
                breaker.success(now, began_closed)  # it answered: the request was the problem
            failed[dep.id] = -1 if exc.kind in DEPLOYMENT_FAULTS else failed.get(dep.id, 0) + 1
            self.metrics.upstream_errors.inc((dep.id, exc.kind))
            self.metrics.attempts.inc((target.name, dep.id, "error"))
            note_attempt(ctx, dep, exc, started, hedge=hedge)
            raise
        except asyncio.CancelledError:
            breaker.abandon(probe)
            self.metrics.attempts.inc((target.name, dep.id, "cancelled"))
            record_attempt(ctx, dep, started, "cancelled", None, hedge=hedge)
            if not any(a["error"] is None for a in ctx.attempt_log):  # not a hedge's loser: the request waited here
                _served(ctx, None, dep)
            raise
        except Exception:  # the adapter refused the request (a 400) or failed: the deployment was not judged
            breaker.abandon(probe)
            raise
        finally:
            if not keep_in_flight:
                stats.in_flight -= 1
        elapsed = time.perf_counter() - started
        if kind.stream:  # judged when it ends (_OwnedStream.release, _WatchedStream._broke)
            breaker.stream_began(time.monotonic(), began_closed)
        else:
            breaker.success(time.monotonic(), began_closed)
        stats.observe(elapsed, kind.stream)
        if limited:
            tokens = kind.tokens(result)
            if tokens:
                stats.count_tokens(tokens, time.time())
        self.metrics.attempts.inc((target.name, dep.id, "ok"))
        record = note_attempt(ctx, dep, None, started, hedge=hedge)
        if kind.stream:
            return _OwnedStream(result, stats, record, breaker)
        return result

    async def _last_resort(self, model: ModelConfig, ctx: RequestContext, kind: Any, state: _Walk,
                           deadline: float) -> tuple[Any, ModelConfig, Deployment] | None:
        """Every breaker is open: rather than fail outright, probe the deployment closest to reopening, once until
        it answers well again (the requests after it get a 503 until the cooldown ends: an open breaker sheds load).

        Deployments cooling down on an upstream's Retry-After are left alone.
        """
        now = time.monotonic()
        candidates = [d for d in model.deployments if self.health.breaker(d).may_spare(now)]
        if not candidates:
            return None
        dep = min(candidates, key=lambda d: self.health.breaker(d).until)
        self.health.breaker(dep).spared = True
        state.attempts += 1
        ctx.entry.extra["last_resort"] = dep.id
        try:
            result = await self._attempt(model, dep, ctx, kind, {}, deadline)
        except UpstreamError as exc:
            state.last = exc
            if not (exc.retryable or exc.kind in DEPLOYMENT_FAULTS):
                raise
            return None
        _served(ctx, model, dep)
        return result, model, dep

    def _note_fallback(self, ctx: RequestContext, source: ModelConfig, target: ModelConfig, reason: str) -> None:
        self.metrics.fallbacks.inc((source.name, target.name, reason))
        ctx.entry.extra.setdefault("fallbacks", []).append({"from": source.name, "to": target.name, "reason": reason})
        ctx.headers["x-switchboard-fallback"] = reason


async def _hold_preamble(upstream: AsyncIterator, held: list[Any]) -> None:
    """Read `upstream` into `held` up to its first chunk that says something, or its end."""
    async for chunk in upstream:
        held.append(chunk)
        if not _preamble(chunk):
            return


def _preamble(chunk: Any) -> bool:
    """A chunk that tells the client nothing yet (the role, empty text), so failing over after it repeats nothing."""
    if not isinstance(chunk, dict) or chunk.get("usage") or not chunk.get("choices"):
        return False
    for choice in chunk["choices"]:
        if choice.get("finish_reason") or choice.get("logprobs"):
            return False
        if any(value for key, value in (choice.get("delta") or {}).items() if key != "role"):
            return False
    return True


class _Prefixed:
    """A stream with chunks already read from it put back in front."""

    __slots__ = ("held", "upstream")

    def __init__(self, held: list[Any], upstream: AsyncIterator) -> None:
        self.held, self.upstream = held, upstream

    def __aiter__(self) -> _Prefixed:
        return self

    async def __anext__(self) -> Any:
        if self.held:
            return self.held.pop(0)
        return await self.upstream.__anext__()

    async def aclose(self) -> None:
        await self.upstream.aclose()  # type: ignore[attr-defined]


class _OwnedStream:
    """A stream whose first chunk arrived, still holding its deployment's in-flight slot and its health verdict:
    a stream that breaks off later is a failure, so success is counted only when it ends well."""

    __slots__ = ("_released", "breaker", "broke", "first", "record", "stats", "upstream")

    def __init__(self, opened: tuple[AsyncIterator, Any], stats: Any, record: dict[str, Any], breaker: Breaker) -> None:
        self.upstream, self.first = opened
        self.stats = stats
        self.record = record
        self.breaker = breaker
        self.broke = False
        self._released = False

    async def release(self) -> None:
        """The stream is over (or a hedged loser that also succeeded): give back the slot and close it."""
        if not self._released:
            self._released = True
            self.stats.in_flight -= 1
            if not self.broke:  # it ended, or its client left: the deployment did its part
                self.breaker.success(time.monotonic(), True)
            await self.upstream.aclose()


class _WatchedStream:
    """The rest of a stream after its first chunk, with its deployment's bookkeeping.

    A class rather than an async generator so that `aclose` always runs the
    bookkeeping, even when the stream is closed before it was iterated.
    """

    __slots__ = ("closed", "dep", "executor", "owned", "tokens")

    def __init__(self, executor: Executor, owned: _OwnedStream, dep: Deployment) -> None:
        self.executor, self.owned, self.dep = executor, owned, dep
        self.tokens = 0
        self.closed = False

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            chunk = await self.owned.upstream.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise
        except UpstreamError as exc:
            self._broke(exc)
            await self.aclose()
            raise
        if isinstance(chunk, dict) and chunk.get("usage"):
            usage = usage_of(chunk)
            if usage:
                self.tokens = usage[0] + usage[1]
        return chunk

    def _broke(self, exc: UpstreamError) -> None:
        """The upstream failed after the first chunk: too late to fail over; count it and say so in the log."""
        ex, dep, record = self.executor, self.dep, self.owned.record
        self.owned.broke = True
        self.owned.breaker.failure(time.monotonic(), None)
        ex.metrics.upstream_errors.inc((dep.id, exc.kind))
        ex.metrics.stream_interruptions.inc((dep.id,))
        record["error"] = exc.kind
        record["message"] = ("after the first chunk: " + exc.message)[:300]
        record["after_first_chunk"] = True

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.executor.metrics.in_flight -= 1
        if self.tokens and (self.dep.rpm is not None or self.dep.tpm is not None):
            self.owned.stats.count_tokens(self.tokens, time.time())
        await self.owned.release()


class _Walk:
    """What one request's walk over models and deployments has used so far."""

    __slots__ = ("attempts", "current", "last", "reason")

    def __init__(self) -> None:
        self.attempts = 0
        self.last: UpstreamError | None = None
        self.current: ModelConfig | None = None
        self.reason = GENERAL


def record_attempt(ctx: RequestContext, dep: Deployment, started: float, error: str | None, message: str | None,
                   *, hedge: bool = False) -> dict[str, Any]:
    record: dict[str, Any] = {
        "deployment": dep.id, "model": dep.model_name,
        "ms": round((time.perf_counter() - started) * 1000.0, 3),
        "error": error, "message": message,
    }
    if hedge:
        record["hedge"] = True
    ctx.attempt_log.append(record)
    ctx.entry.attempts = len(ctx.attempt_log)
    ctx.headers["x-switchboard-attempts"] = str(len(ctx.attempt_log))
    return record


def note_attempt(ctx: RequestContext, dep: Deployment, exc: UpstreamError | None, started: float,
                 *, hedge: bool = False) -> dict[str, Any]:
    """Record a finished attempt; the request's deployment fields follow the latest one."""
    record = record_attempt(ctx, dep, started, None if exc is None else exc.kind,
                            None if exc is None else exc.message[:300], hedge=hedge)
    _served(ctx, None, dep)
    return record


def served_by(ctx: RequestContext, dep: Deployment) -> None:
    """The request's answer came from ``dep``, whichever call ran last (a cascade's judge runs after its weak model)."""
    _served(ctx, None, dep)


def _served(ctx: RequestContext, target: ModelConfig | None, dep: Deployment) -> None:
    ctx.entry.model_used = dep.model_name
    ctx.entry.deployment = dep.id
    ctx.entry.provider = dep.provider
    ctx.headers["x-switchboard-model"] = dep.model_name
    ctx.headers["x-switchboard-deployment"] = dep.id
