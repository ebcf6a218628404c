"""Admission and settlement: the accounting ends of a request.

`admit` runs after authentication and model resolution, before anything goes
upstream: parallel-request slot, rate limits (rpm/tpm per key, per key and
model, per model), then the credit and budget reservation of the request's
worst-case cost. Any of them can refuse (429 or 402) and nothing is held.

`commit` runs when the answer is known and *before* its last byte goes to
the client (before returning a completion, before a stream's [DONE]): it
writes the actual charge to the ledger in one durable transaction, together
with the response stored for an `Idempotency-Key`. So a replica killed at
any moment has charged every request whose response the client received.

`settle` runs exactly once per request, whatever the outcome. It is sync and
never raises: what is left to do (release holds of a failed request, free the
parallel slot, correct the token count) goes to background tasks, and the
request log gets its entry. Failed upstream attempts are never charged; a
client that hangs up mid-stream is charged for what the upstream produced.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from switchboard.accounting.keys import KeyRecord
from switchboard.accounting.ledger import Holds, Ledger
from switchboard.accounting.limits import Check, MemoryLimits, RedisLimits, reset_text
from switchboard.accounting.demand import Demand
from switchboard.accounting.media_tokens import estimate_media
from switchboard.accounting.pricing import MAX_NANOS, to_nanos, worst_case_nanos
from switchboard.accounting.settings import account_settings
from switchboard.accounting.shared_limits import SharedLimits
from switchboard.config import ModelConfig, Pricing
from switchboard.context import RequestContext
from switchboard.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
)
from switchboard.http.server import Request, Response, StreamResponse
from switchboard.storage.base import Steps, execute, fetchone

if TYPE_CHECKING:
    from switchboard.app import Gateway

log = logging.getLogger("switchboard.accounts")
T = TypeVar("T")
_BACKGROUND_TRIES = 11  # 0.1 s doubling to 15 s between tries: ~70 s in all
_CLOSE_SECONDS = 20.0  # how long shutdown waits for accounting writes still retrying
# A stored stream is zlib-compressed (76x smaller at ~0.6 ms per 1,000 chunks); its first byte tells it from JSON.
_ZLIB = b"x"


class IdempotencyConflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "idempotency_conflict"


@dataclass(slots=True)
class _Pending:
    """What admission holds for one request until it settles."""

    key: KeyRecord | None
    holds: Holds = field(default_factory=Holds)
    token_checks: list[str] = field(default_factory=list)
    tokens_counted: int = 0
    second: int = 0
    parallel: str | None = None
    idem: tuple[str, str] | None = None
    claimed_at: float = 0.0  # when `idem` was claimed: the claim's identity in the table
    committed: bool = False
    unfinished: list[asyncio.Future[Any]] = field(default_factory=list)  # writes a hang-up interrupted, still running


class Admission:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.settings = account_settings(gateway.config)
        self.ledger = Ledger(gateway.storage)
        redis = getattr(gateway, "redis", None)
        shared = getattr(gateway, "shared_limits", None)
        self.limits: MemoryLimits | RedisLimits | SharedLimits = (
            RedisLimits(redis) if redis is not None else shared if shared is not None else MemoryLimits())
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        await self.ledger.sweep(time.time())
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLOSE_SECONDS
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(list(self._tasks), timeout=deadline - loop.time())
        if self._tasks:  # the database stayed down: the holds left expire with their reservations
            log.error("%d accounting write(s) still failing at shutdown; given up", len(self._tasks))
            for task in list(self._tasks):
                task.cancel()

    async def _sweep_forever(self) -> None:
        interval = min(60.0, self.settings.reservation_ttl_seconds / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                released = await self.ledger.sweep(time.time())
                if released:
                    log.warning("released the credit holds of %d request(s) that never settled", released)
            except Exception:
                log.exception("sweeping expired reservations failed")

    def _background(self, work: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run `work()` off the request, retrying for about a minute (a database restart): settle itself must not
        wait or fail. What still fails is left to the reservation's expiry."""
        async def run() -> None:
            for attempt in range(_BACKGROUND_TRIES):
                try:
                    await work()
                    return
                except Exception:
                    if attempt == _BACKGROUND_TRIES - 1:
                        log.exception("%s failed", what)
                        return
                    await asyncio.sleep(min(0.1 * 2 ** attempt, 15.0))

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ admit

    def _pend(self, ctx: RequestContext) -> _Pending:
        pend = self._pending.get(ctx.request_id)
        if pend is None:
            key = getattr(ctx.identity, "key", None)
            pend = self._pending[ctx.request_id] = _Pending(key)
        return pend

    async def admit(self, ctx: RequestContext, model: ModelConfig, demand: Demand, then: Sequence[ModelConfig] = (),
                    fallbacks: Sequence[ModelConfig] = ()) -> int | None:
        """Refuse (by raising a `GatewayError`) or admit the request. The credit hold covers the dearest model
        that may serve it (`model`, its fallbacks, `fallbacks`) and, on top, every model it may call after
        that one (`then`: a cascade's judge and strong model). Returns the output cap the hold assumed when the
        client gave none: the caller must send it upstream, or the answer could cost more than was held."""
        key = getattr(ctx.identity, "key", None)
        model_limit = self.settings.model_limits.get(model.name)
        if key is None and model_limit is None:
            return None
        pend = self._pend(ctx)
        max_out = demand.max_output if demand.max_output is not None else (
            model.max_output_tokens or self.settings.default_max_output_tokens)
        requested = demand.prompt_estimate + max_out * demand.choices  # tpm counts the output it allows
        if key is not None and key.max_parallel:
            scope = f"key:{key.key_id}"
            acquired = await self._finish(pend, self._limits(self.limits.acquire(
                scope, key.max_parallel, ctx.request_id, self.settings.reservation_ttl_seconds)),
                lambda taken: setattr(pend, "parallel", scope if taken else None))
            if not acquired:
                raise RateLimited(f"Too many parallel requests on this API key: the limit is {key.max_parallel} at a time.",
                                  headers={"retry-after": "1"})
        checks = self._key_checks(key, requested) + self._model_checks(key, model, requested)
        if demand.media and any(c.scope.endswith(":tpm") for c in checks):
            media = await estimate_media(demand.media, model)
            requested += media
            for check in checks:
                check.amount += media if check.scope.endswith(":tpm") else 0
        if checks:
            verdict = await self._hit(checks)
            ctx.headers.update(_limit_headers(checks, verdict))
            pend.second = verdict.second
            pend.tokens_counted = requested
            pend.token_checks = [c.scope for c in checks if c.scope.endswith(":tpm")]
        if key is None or not (key.prepaid_accounts or key.budgets):
            return None
        bound = demand.prompt_bound()
        output = max_out * demand.choices

        def worst(m: ModelConfig) -> int:
            per_image = m.image_tokens if m.image_tokens is not None else self.settings.image_reserve_tokens
            prompt = math.ceil(bound.tokens(per_image, m.context_window or self.settings.document_reserve_tokens)
                               * self.settings.prompt_reserve_factor)
            if m.context_window:
                prompt = min(prompt, m.context_window)  # a longer prompt is refused, and not billed
            return max(worst_case_nanos(p, prompt, output) for p in self._pricings(m))

        amount = max(worst(m) for m in (model, *fallbacks)) + sum(worst(m) for m in then)
        try:
            reserve = self.ledger.reserve(ctx.request_id, key.prepaid_accounts, key.budgets, min(amount, MAX_NANOS),
                                          self.settings.reservation_ttl_seconds, time.time())
            _, warnings = await self._finish(pend, reserve, lambda reserved: setattr(pend, "holds", reserved[0]))
        except GatewayError:  # refused for credit or budget: it was never served, so it uses up no rate limit
            for check in checks:
                self._background(lambda c=check: self.limits.adjust(c.scope, pend.second, -c.amount),
                                 "returning a refused request's rate-limit count")
            pend.token_checks = []
            raise
        if warnings:
            ctx.headers["x-switchboard-budget-warning"] = "; ".join(warnings)
            log.warning("soft budget exceeded: %s", "; ".join(warnings))
        return max_out if demand.max_output is None else None

    @staticmethod
    async def _finish(pend: _Pending, write: Awaitable[T], keep: Callable[[T], None]) -> T:
        """Await a write whose effect settle must undo (a hold, a parallel slot), and `keep` what it took. A client
        that hangs up meanwhile does not abort it: it runs to its end, and settle waits for it before undoing."""
        task = asyncio.ensure_future(write)
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            pend.unfinished.append(task)
            task.add_done_callback(lambda t: keep(t.result()) if not t.cancelled() and t.exception() is None else None)
            raise
        keep(result)
        return result

    @staticmethod
    async def _limits(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except Exception as exc:
            log.error("the rate-limit store failed: %s", exc)
            raise ServiceUnavailable("The gateway cannot check rate limits right now (its Redis is unreachable); "
                                     "retry shortly.", code="limits_unavailable") from None

    async def admit_next(self, ctx: RequestContext, model: ModelConfig, estimated_tokens: int,
                         max_output_tokens: int | None) -> None:
        """Count a further model call of an admitted request (a cascade's judge or strong model) against that
        model's own limits, or refuse it with a 429; the key's limits counted the request once already."""
        key = getattr(ctx.identity, "key", None)
        checks = self._model_checks(key, model, estimated_tokens + (max_output_tokens or 0))
        if checks:
            await self._hit(checks)

    async def _hit(self, checks: list[Check]) -> Any:
        """Count `checks`, or raise the 429 for the first one over its limit."""
        verdict = await self._limits(self.limits.hit(checks))
        if not verdict.admitted:
            failed = verdict.failed
            assert failed is not None
            what = "requests" if failed.scope.endswith("rpm") else "tokens"
            unit = "rpm" if what == "requests" else "tpm"
            if failed.amount > failed.limit:  # no wait can admit it: the SDKs must not retry it
                raise RateLimited(  # in OpenAI's words for the same case
                    f"Request too large for {_scope_name(failed.scope)} on tokens per minute (tpm): "
                    f"Limit {failed.limit}, Requested {failed.amount}. That counts the prompt and the output it "
                    f"allows (max_tokens, or the model's most when not set): lower max_tokens or shorten the prompt.",
                    headers={**_limit_headers(checks, verdict), "x-should-retry": "false"})
            retry = max(1, math.ceil(verdict.retry_after))
            headers = {**_limit_headers(checks, verdict), "retry-after": str(retry)}
            raise RateLimited(
                f"Rate limit reached for {what} per minute ({unit}) on {_scope_name(failed.scope)}: "
                f"Limit {failed.limit}, Used {verdict.used[checks.index(failed)]}, Requested {failed.amount}. "
                f"Please try again in {retry}s.", headers=headers)
        return verdict

    @staticmethod
    def _key_checks(key: KeyRecord | None, tokens: int) -> list[Check]:
        checks: list[Check] = []
        if key is not None:
            if key.rpm:
                checks.append(Check(f"key:{key.key_id}:rpm", key.rpm, 1))
            if key.tpm:
                checks.append(Check(f"key:{key.key_id}:tpm", key.tpm, tokens))
        return checks

    def _model_checks(self, key: KeyRecord | None, model: ModelConfig, tokens: int) -> list[Check]:
        """The model's limits: the key's own for it, and the gateway-wide one (`accounts.model_limits`)."""
        checks: list[Check] = []
        per_model = (key.model_limits.get(model.name) or {}) if key is not None else {}
        if per_model.get("rpm"):
            checks.append(Check(f"key:{key.key_id}:model:{model.name}:rpm", int(per_model["rpm"]), 1))
        if per_model.get("tpm"):
            checks.append(Check(f"key:{key.key_id}:model:{model.name}:tpm", int(per_model["tpm"]), tokens))
        model_limit = self.settings.model_limits.get(model.name)
        if model_limit is not None:
            if model_limit.rpm:
                checks.append(Check(f"model:{model.name}:rpm", model_limit.rpm, 1))
            if model_limit.tpm:
                checks.append(Check(f"model:{model.name}:tpm", model_limit.tpm, tokens))
        return checks

    def _pricings(self, model: ModelConfig) -> list[Pricing]:
        """Every price the request could end up paying: the model's deployments and its fallbacks'."""
        out = [model.pricing] + [d.pricing for d in model.deployments if d.pricing]
        for name in model.fallbacks + model.context_fallbacks + model.policy_fallbacks:
            fb = self.gw.config.models.get(name)
            if fb is not None:
                out += [fb.pricing] + [d.pricing for d in fb.deployments if d.pricing]
        return out

    # ------------------------------------------------------------ idempotency

    async def begin_idempotent(
        self, ctx: RequestContext, request: Request, render: Callable[[bytes, str], bytes] | None = None,
        render_stream: Callable[[AsyncIterator[dict[str, Any]], str], AsyncIterator[bytes]] | None = None,
    ) -> Response | StreamResponse | None:
        """Claim an `Idempotency-Key`, or answer with the stored first response.

        The stored response is the pipeline's (OpenAI-shaped) result: a completion object, or
        for a stream the JSON array of the chunks the client was sent. An ingress that answers
        in another format passes `render` (a completion) and `render_stream` (chunks to SSE); each is also given
        the first request's id, from which that format's own ids may be derived.
        """
        idem_key = request.headers.get("idempotency-key")
        if not idem_key:
            return None
        if len(idem_key) > 255:
            raise InvalidRequest("The Idempotency-Key header must be at most 255 characters.")
        key_id = (ctx.identity.key_id if ctx.identity else None) or "anonymous"
        fingerprint = hashlib.sha256(request.path.encode() + b"\0" + request.body).hexdigest()
        now = time.time()
        settings = self.settings

        def claim() -> Steps[dict[str, Any] | None]:
            # An insert that does nothing on conflict, never a read then a write: two replicas claiming the same
            # key at once cannot both win (Postgres runs READ COMMITTED), and neither gets a unique violation.
            insert = ("INSERT INTO idempotency (key_id, idem_key, fingerprint, state, created_at) "
                      "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (key_id, idem_key) DO NOTHING")
            if (yield execute(insert, key_id, idem_key, fingerprint, now)):
                return None
            row = yield fetchone("SELECT * FROM idempotency WHERE key_id = ? AND idem_key = ?", key_id, idem_key)
            stale = row is not None and (
                (row["state"] == "done" and now - row["created_at"] > settings.idempotency_ttl_seconds)
                or (row["state"] == "pending" and now - row["created_at"] > settings.reservation_ttl_seconds))
            if row is None or stale:  # take over only the row seen stale (another request may have done so)
                if row is not None:
                    yield execute("DELETE FROM idempotency WHERE key_id = ? AND idem_key = ? AND created_at = ?",
                                  key_id, idem_key, row["created_at"])
                if (yield execute(insert, key_id, idem_key, fingerprint, now)):
                    return None
                row = yield fetchone("SELECT * FROM idempotency WHERE key_id = ? AND idem_key = ?", key_id, idem_key)
            return row

        row = await self.gw.storage.transact(claim())
        if row is None:
            pend = self._pend(ctx)
            pend.idem, pend.claimed_at = (key_id, idem_key), now
            return None
        if row["fingerprint"] != fingerprint:
            raise InvalidRequest("This Idempotency-Key was already used with a different request body.",
                                 param="Idempotency-Key")
        if row["state"] == "pending":
            raise IdempotencyConflict("A request with this Idempotency-Key is still in progress; retry it later.")
        headers = orjson.loads(row["headers"]) if row["headers"] else {}
        headers["idempotent-replayed"] = "true"
        origin = str(headers.get("x-request-id", ""))
        body = bytes(row["body"]) if row["body"] is not None else None
        if body is not None and not body.startswith((b"[", _ZLIB)):
            return Response(int(row["status"]), render(body, origin) if render is not None else body, headers)
        if body is None or render_stream is None:  # body None: streamed before streams' chunks were stored
            raise IdempotencyConflict("The request with this Idempotency-Key was streamed and has completed; "
                                      "this stream cannot be replayed.")
        if body.startswith(_ZLIB):
            body = await _off_loop(zlib.decompress, body)
        return StreamResponse(render_stream(_stored_chunks(orjson.loads(body)), origin), headers=headers)

    def keeps_stream(self, ctx: RequestContext) -> bool:
        """Whether this stream's chunks are to be stored (it holds an Idempotency-Key) for a replay."""
        pend = self._pending.get(ctx.request_id)
        return pend is not None and pend.idem is not None

    # ------------------------------------------------------------ commit and settle

    async def commit(self, ctx: RequestContext, response: dict[str, Any] | list[dict[str, Any]] | None = None) -> None:
        """Durably charge the request's actual cost. Awaited before the response's last byte is sent.
        ``response`` (a completion, or a stream's chunks) is stored for an Idempotency-Key's replay."""
        cost = to_nanos(ctx.entry.cost)
        ctx.entry.cost = cost / 1e9
        pend = self._pending.get(ctx.request_id)
        if pend is None or pend.committed:
            return
        idem = None
        if pend.idem is not None:
            body = orjson.dumps(response) if response is not None else None
            if isinstance(response, list):  # a stream's chunks: ~250 bytes each, mostly the repeated envelope
                body = await _off_loop(zlib.compress, body, 1)
            idem = (*pend.idem, 200, body, orjson.dumps(ctx.headers).decode())
        key = pend.key
        charges = [key.account] + ([key.team_account] if key.team_account else []) if key else []
        if charges or pend.holds or idem:
            work = self.ledger.settle(ctx.request_id, pend.holds, charges, key.budgets if key else [], cost,
                                      ctx.entry.model_used or ctx.entry.model_requested, time.time(), idem)
            task = asyncio.get_running_loop().create_task(work)
            try:
                await asyncio.shield(task)  # a client hanging up now must not abort the transaction
            except asyncio.CancelledError:
                pend.committed = True  # the shielded write goes on; settle must not release or charge again
                raise
            except Exception as exc:
                log.exception("recording the charge of %s failed", ctx.request_id)
                raise ServiceUnavailable("The gateway could not record this request's cost; it was not charged. "
                                         "Retry it.", code="accounting_unavailable") from exc
        pend.committed = True

    def settle(self, ctx: RequestContext) -> None:
        """Record the finished request. Must not block or raise."""
        pend = self._pending.pop(ctx.request_id, None)
        if pend is not None and pend.unfinished:  # a hold or slot is still being taken: undo it once it is
            async def later() -> None:
                await asyncio.wait(pend.unfinished)
                pend.unfinished = []
                self._settle(ctx, pend)

            task = asyncio.get_running_loop().create_task(later())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._settle(ctx, pend)

    def _settle(self, ctx: RequestContext, pend: _Pending | None) -> None:
        entry = ctx.entry
        key = pend.key if pend is not None else getattr(ctx.identity, "key", None)
        if key is not None:  # the team charged now: the key may be moved to another team later
            entry.team = key.team
        if pend is not None:
            if not pend.committed:
                if entry.status == 499 and entry.cost > 0 and pend.key is not None:
                    # The client hung up mid-answer: the upstream has produced (and bills) what it sent.
                    self._background_commit(ctx, pend)
                else:
                    entry.cost = 0.0
                    if pend.holds:
                        holds, rid = pend.holds, ctx.request_id
                        self._background(lambda: self.ledger.release(rid, holds), "releasing credit holds")
                    if pend.idem is not None:
                        key_id, idem_key = pend.idem
                        claimed = pend.claimed_at
                        self._background(lambda: self._forget_idempotency(key_id, idem_key, claimed),
                                         "clearing an idempotency key")
            if pend.parallel is not None:
                scope, rid = pend.parallel, ctx.request_id
                self._background(lambda: self.limits.release(scope, rid), "freeing a parallel slot")
            if pend.token_checks:  # failed requests too: what they did not produce goes back to the window
                delta = entry.prompt_tokens + entry.completion_tokens - pend.tokens_counted
                if delta:
                    for scope in pend.token_checks:
                        self._background(lambda s=scope: self.limits.adjust(s, pend.second, delta), "correcting tpm")
        else:
            # No account pays, but the log shows what the upstream bills, a hang-up mid-answer included.
            entry.cost = to_nanos(entry.cost) / 1e9 if entry.status in (200, 499) else 0.0
        self.gw.request_log.record(entry)

    def _background_commit(self, ctx: RequestContext, pend: _Pending) -> None:
        entry = ctx.entry
        cost = to_nanos(entry.cost)
        entry.cost = cost / 1e9
        key = pend.key
        assert key is not None
        charges = [key.account] + ([key.team_account] if key.team_account else [])
        now = time.time()
        self._background(lambda: self.ledger.settle(ctx.request_id, pend.holds, charges, key.budgets, cost,
                                                    entry.model_used or entry.model_requested, now, None),
                         "charging a disconnected request")
        if pend.idem is not None:
            key_id, idem_key = pend.idem
            claimed = pend.claimed_at
            self._background(lambda: self._forget_idempotency(key_id, idem_key, claimed), "clearing an idempotency key")

    async def release_claim(self, ctx: RequestContext) -> None:
        """Free a failed request's Idempotency-Key before its error goes out, so that an immediate retry runs."""
        pend = self._pending.get(ctx.request_id)
        if pend is not None and pend.idem is not None and not pend.committed:
            idem, pend.idem = pend.idem, None
            try:
                await self._forget_idempotency(*idem, pend.claimed_at)
            except Exception as exc:  # the key stays taken until its reservation TTL: no worse than before
                log.error("clearing an idempotency key failed: %s", exc)

    async def _forget_idempotency(self, key_id: str, idem_key: str, claimed_at: float) -> None:
        def forget() -> Steps[None]:  # this request's own claim only
            yield execute("DELETE FROM idempotency WHERE key_id = ? AND idem_key = ? AND state = 'pending' "
                          "AND created_at = ?", key_id, idem_key, claimed_at)

        await self.gw.storage.transact(forget())


def _scope_name(scope: str) -> str:
    parts = scope.split(":")
    if parts[0] == "key" and len(parts) > 3:
        return f"key {parts[1]} for model {parts[3]}"
    return f"{parts[0]} {parts[1]}"


def _limit_headers(checks: list[Check], verdict: Any) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, for the tightest request and token limits."""
    headers: dict[str, str] = {}
    for suffix, kind in (("rpm", "requests"), ("tpm", "tokens")):
        best = None
        for i, c in enumerate(checks):
            if c.scope.endswith(suffix):
                remaining = max(0, c.limit - verdict.used[i])
                if best is None or remaining < best[1]:
                    best = (c.limit, remaining, verdict.reset[i])
        if best is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(best[0])
            headers[f"x-ratelimit-remaining-{kind}"] = str(best[1])
            headers[f"x-ratelimit-reset-{kind}"] = reset_text(best[2] if best[2] > 0 else 60)
    return headers


async def _off_loop(work: Callable[..., bytes], data: bytes, *args: Any) -> bytes:
    """`work(data, *args)`, in a thread when `data` is big enough to hold up the event loop (zlib frees the GIL)."""
    return await asyncio.to_thread(work, data, *args) if len(data) > 65536 else work(data, *args)


async def _stored_chunks(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk
