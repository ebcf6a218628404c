"""Deployment health: a circuit breaker per deployment, optionally shared through Redis.

A breaker is *closed* (traffic flows) until the deployment fails `failures`
times in a row, or `failure_ratio` of at least `min_requests` results in the
last `window` seconds are failures, or it answers 429 with a Retry-After.
Then it is *open* for `cooldown` seconds (or the Retry-After), and no request
is sent there. After that it is *half-open*: up to `half_open_probes`
requests go through; a success closes it, a failure opens it again.

The hot path only ever reads local memory. With several replicas, state
*transitions* (opened until T, closed) are written to Redis and published on
a channel; every replica applies the others' transitions to its local
breakers from a background listener, and loads the current set when it
starts. Failure counting stays per replica: a replica opens a breaker on its
own evidence, and then every replica stops sending there.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from switchboard.config import Deployment, GatewayConfig, ModelConfig
from switchboard.routing.policy import BreakerPolicy

log = logging.getLogger("switchboard.health")

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}
_BUCKETS = 10

Transition = Callable[[str, int, float, str], None]  # (deployment id, state, open until (wall clock), reason)


class Breaker:
    """One deployment's circuit: O(1) per result, no allocation."""

    __slots__ = (
        "_epoch",
        "_fails",
        "_on_transition",
        "_totals",
        "_width",
        "consecutive",
        "dep_id",
        "opened_by_retry_after",
        "opened_count",
        "policy",
        "probes",
        "spared",
        "state",
        "until",
    )

    def __init__(self, dep_id: str, policy: BreakerPolicy, on_transition: Transition | None = None) -> None:
        self.dep_id = dep_id
        self.policy = policy
        self.state = CLOSED
        self.until = 0.0          # monotonic time the open state ends
        self.consecutive = 0
        self.probes = 0
        self.opened_by_retry_after = False
        self.spared = False  # the one last-resort attempt was made, and the deployment has not answered well since
        self.opened_count = 0
        self._width = policy.window / _BUCKETS
        self._epoch = [0] * _BUCKETS
        self._totals = [0] * _BUCKETS
        self._fails = [0] * _BUCKETS
        self._on_transition = on_transition

    # ------------------------------------------------------------ questions

    def available(self, now: float) -> bool:
        """May a request be sent now? (Does not reserve a half-open probe; `begin` does.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now < self.until:
                return False
            self.state, self.probes = HALF_OPEN, 0
            self._announce("cooldown over")
        return self.probes < self.policy.half_open_probes

    def may_spare(self, now: float) -> bool:
        """May a request that found every breaker open make its last-resort attempt here? Once until the
        deployment answers well again, never while waiting out an upstream's Retry-After, never past the half-open
        probe limit."""
        if self.state == CLOSED or self.opened_by_retry_after or self.spared:
            return False
        return self.current_state(now) == OPEN or self.probes < self.policy.half_open_probes

    def current_state(self, now: float) -> int:
        if self.state == OPEN and now >= self.until:
            return HALF_OPEN
        return self.state

    # ------------------------------------------------------------ results

    def begin(self) -> bool:
        """An attempt starts; returns whether it is a half-open probe."""
        if self.state == HALF_OPEN:
            self.probes += 1
            return True
        return False

    def abandon(self, probe: bool) -> None:
        """An attempt was cancelled before it could say anything about health."""
        if probe and self.state == HALF_OPEN and self.probes > 0:
            self.probes -= 1

    def success(self, now: float, began_closed: bool = False) -> None:
        """An attempt succeeded. One that began while the breaker was closed, before whatever opened it, says
        nothing about the deployment now: only a probe (or a last-resort attempt) closes an open breaker."""
        self.consecutive = 0
        self._count(now, False)
        if self.state == CLOSED:
            self.spared = False
        elif not began_closed:
            self.close("probe succeeded")

    def stream_began(self, now: float, began_closed: bool) -> None:
        """A stream's first chunk. A probe's lets traffic through again, but a stream is judged when it ends:
        until a success, one more failure reopens the breaker at once, as a failed half-open probe does, whatever
        rule opened it (a failure ratio or a Retry-After leaves few consecutive failures to keep)."""
        if self.state != CLOSED and not began_closed:
            consecutive, spared = self.consecutive, self.spared
            self.close("probe stream began")
            self.consecutive, self.spared = max(consecutive, self.policy.failures - 1), spared

    def failure(self, now: float, retry_after: float | None = None) -> None:
        self.consecutive += 1
        self._count(now, True)
        policy = self.policy
        if retry_after is not None and retry_after > 0:
            self.open(now, min(retry_after, policy.max_retry_after), "retry-after", by_retry_after=True)
        elif self.state == HALF_OPEN:
            self.open(now, policy.cooldown, "probe failed")
        elif self.state == CLOSED:
            if self.consecutive >= policy.failures:
                self.open(now, policy.cooldown, f"{self.consecutive} consecutive failures")
            else:
                total, fails = self._window(now)
                if total >= policy.min_requests and fails >= policy.failure_ratio * total:
                    self.open(now, policy.cooldown, f"{fails}/{total} failed in {policy.window:g}s")

    # ------------------------------------------------------------ transitions

    def open(self, now: float, seconds: float, reason: str, *, by_retry_after: bool = False,
             announce: bool = True) -> None:
        until = now + seconds
        if self.state == OPEN and until <= self.until:
            return
        self.state, self.until, self.probes = OPEN, until, 0
        self.opened_by_retry_after = by_retry_after
        self.opened_count += 1
        if announce:
            self._announce(reason)

    def close(self, reason: str, *, announce: bool = True) -> None:
        self.state, self.consecutive, self.probes = CLOSED, 0, 0
        self.opened_by_retry_after = self.spared = False
        for i in range(_BUCKETS):
            self._totals[i] = self._fails[i] = 0
        if announce:
            self._announce(reason)

    def _announce(self, reason: str) -> None:
        if self.state == OPEN:
            log.warning("breaker for %s opened for %.1fs: %s", self.dep_id, self.until - time.monotonic(), reason)
        else:
            log.info("breaker for %s is %s: %s", self.dep_id, STATE_NAMES[self.state], reason)
        if self._on_transition is not None:
            wall_until = time.time() + (self.until - time.monotonic()) if self.state == OPEN else 0.0
            self._on_transition(self.dep_id, self.state, wall_until, reason)

    # ------------------------------------------------------------ window

    def _count(self, now: float, failed: bool) -> None:
        epoch = int(now / self._width)
        i = epoch % _BUCKETS
        if self._epoch[i] != epoch:
            self._epoch[i], self._totals[i], self._fails[i] = epoch, 0, 0
        self._totals[i] += 1
        if failed:
            self._fails[i] += 1

    def _window(self, now: float) -> tuple[int, int]:
        oldest = int(now / self._width) - _BUCKETS + 1
        total = fails = 0
        for i in range(_BUCKETS):
            if self._epoch[i] >= oldest:
                total += self._totals[i]
                fails += self._fails[i]
        return total, fails


class Health:
    """Every deployment's breaker, kept in this process; see `RedisHealthSync` (replicas) and
    `SharedHealthSync` (the workers of one host) for sharing it."""

    def __init__(self, config: GatewayConfig) -> None:
        self.breakers: dict[str, Breaker] = {}
        self.listeners: list[Transition] = []
        self.refresh: Callable[[], None] | None = None  # applies other workers' transitions before a read
        self.registered: list[Callable[[str], None]] = []  # told of each deployment added after start
        self.shared_names: dict[str, str] = {}
        self.by_shared_name: dict[str, str] = {}
        for model in config.models.values():
            self._add(model)

    def _add(self, model: ModelConfig) -> list[str]:
        added = []
        for dep in model.deployments:
            if dep.id not in self.breakers:
                self.breakers[dep.id] = Breaker(dep.id, model.reliability.breaker, self._transition)
                name = self.shared_names[dep.id] = shared_name(dep)
                self.by_shared_name[name] = dep.id
                added.append(dep.id)
        return added

    def register(self, model: ModelConfig) -> None:
        """A model made after start (a wildcard's, see wildcards.py): breakers with its own policy, shared
        with other workers and replicas like the rest from now on."""
        for dep_id in self._add(model):
            for hook in self.registered:
                hook(dep_id)

    def _transition(self, dep_id: str, state: int, wall_until: float, reason: str) -> None:
        for listener in self.listeners:
            listener(dep_id, state, wall_until, reason)

    def breaker(self, dep: Deployment) -> Breaker:
        b = self.breakers.get(dep.id)
        if b is None:  # a deployment added after start (tests, dynamic config)
            b = self.breakers[dep.id] = Breaker(dep.id, BreakerPolicy(), self._transition)
        return b

    def sync(self) -> None:
        """Apply the transitions other workers have shared since the last look (none without them)."""
        if self.refresh is not None:
            self.refresh()

    def available(self, dep: Deployment, now: float) -> bool:
        self.sync()
        return self.breaker(dep).available(now)

    def states(self) -> dict[str, int]:
        self.sync()
        now = time.monotonic()
        return {dep_id: b.current_state(now) for dep_id, b in self.breakers.items()}

    def apply_remote(self, dep_id: str, state: int, wall_until: float) -> None:
        """Another replica's (or worker's) transition: adopt it without announcing it back."""
        b = self.breakers.get(dep_id)
        if b is None:
            return
        if state == OPEN:
            remaining = wall_until - time.time()
            if remaining > 0:
                b.open(time.monotonic(), remaining, "opened by another replica", announce=False)
        elif state == CLOSED and b.state != CLOSED:
            b.close("closed by another replica", announce=False)


class RedisHealthSync:
    """Shares breaker transitions between replicas through Redis (hash + pub/sub).

    Keys: ``{ns}:breakers`` (hash: shared deployment name -> "name, state, until_epoch, replica"),
    channel ``{ns}:breaker-events``. Writes happen only on transitions, in
    background tasks; a Redis outage degrades to per-replica breakers and is
    retried, never failing a request.
    """

    def __init__(self, health: Health, url: str, namespace: str) -> None:
        self.health = health
        self.url = url
        self.key = f"{namespace}:breakers"
        self.channel = f"{namespace}:breaker-events"
        self.replica = uuid.uuid4().hex[:12]
        self._redis: Any = None
        self._listener: asyncio.Task | None = None
        self._writes: set[asyncio.Task] = set()
        self._closing = False
        self.ready = asyncio.Event()

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        health = self.health
        health.listeners.append(self._publish)
        health.registered.append(self.adopt)
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self.ready.wait(), 3.0)
        except TimeoutError:
            log.warning("Redis at %s not reachable: breakers are per replica until it is", _safe(self.url))

    async def close(self) -> None:
        self._closing = True
        if self._writes:
            await asyncio.wait(self._writes, timeout=1.0)
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except (asyncio.CancelledError, Exception):
                pass
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:
                pass

    def adopt(self, dep_id: str) -> None:
        """A deployment added after start: take on the state another replica stored for it (in the
        background: the request that made it may still try it once)."""
        if self._closing or self._redis is None:
            return
        task = asyncio.get_running_loop().create_task(self._load(self.health.shared_names[dep_id]))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _load(self, name: str) -> None:
        try:
            raw = await self._redis.hget(self.key, name)
        except Exception as exc:
            log.warning("Redis breaker load for %s: %s", name, exc)
            return
        if raw is not None:
            self._apply(raw)

    def _publish(self, dep_id: str, state: int, wall_until: float, reason: str) -> None:
        if self._closing or self._redis is None or state == HALF_OPEN:
            return  # half-open is a local, time-derived state: nothing to share
        task = asyncio.get_running_loop().create_task(self._write(dep_id, state, wall_until))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, dep_id: str, state: int, wall_until: float) -> None:
        name = self.health.shared_names.get(dep_id)
        if name is None:
            return
        message = f"{name}\t{state}\t{wall_until:.3f}\t{self.replica}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            if state == OPEN:
                pipe.hset(self.key, name, message)
                # The hash outlives its longest open breaker by a minute, then goes away by itself.
                pipe.expire(self.key, max(1, math.ceil(wall_until - time.time())) + 60, gt=True)
                pipe.expire(self.key, max(1, math.ceil(wall_until - time.time())) + 60, nx=True)
            else:
                pipe.hdel(self.key, name)
            pipe.publish(self.channel, message)
            await pipe.execute()
        except Exception as exc:  # never let Redis trouble reach a request
            log.warning("could not share breaker state for %s through Redis: %s", dep_id, exc)

    async def _listen(self) -> None:
        delay = 0.5
        while not self._closing:
            pubsub = None
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                # Subscribed first, then loaded: no transition falls between the two.
                for message in (await self._redis.hgetall(self.key)).values():
                    self._apply(message)
                self.ready.set()
                delay = 0.5
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        self._apply(item["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Redis breaker listener: %s (retrying in %.1fs)", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except Exception:
                        pass

    def _apply(self, raw: bytes | str) -> None:
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            name, state, until, replica = text.split("\t")
            dep_id = self.health.by_shared_name.get(name)
            if replica == self.replica or dep_id is None:
                return
            self.health.apply_remote(dep_id, int(state), float(until))
        except (ValueError, UnicodeDecodeError):
            log.warning("ignoring a malformed breaker event from Redis")


def shared_name(dep: Deployment) -> str:
    """How replicas name a deployment in Redis: its id plus a fingerprint of where it points.

    Replicas of one gateway share a config, so they agree; unrelated gateways
    that happen to share a Redis and a deployment id (`gpt-4o#0`) do not mix.
    """
    digest = hashlib.sha1(f"{dep.provider}|{dep.base_url}|{dep.upstream_model}".encode()).hexdigest()[:10]
    return f"{dep.id}|{digest}"


def _safe(url: str) -> str:
    """A Redis URL without its password, for log lines."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
