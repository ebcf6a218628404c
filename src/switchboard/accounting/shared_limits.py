"""Rate limits and parallel caps shared by the workers of one host, without Redis.

`switchboard serve --workers N` forks N processes. Counting in each process's memory
would let a limit of N admit up to N x workers, so the parent creates this table in shared
memory before forking (`SharedWords`: every worker inherits it, and each check-and-count
runs under its lock, which a crashed worker cannot keep).

The same windows as `MemoryLimits` (60 one-second buckets, checked and counted in one
step), in fixed-size open-addressing tables of int64:

- windows: [scope hash, last second seen, total, oldest counted second, 60 buckets];
  the bucket of second s is s % 60, and every visit first clears the buckets of the
  seconds that have left the window, so the total is the sum of the last 60 seconds;
- parallel counts: [scope hash, live members, earliest expiry (us)];
- parallel members: [hash of scope and member, scope hash, expiry (us)]; expired
  members (a crashed worker's) are swept only when a scope is at its cap and its
  earliest expiry has passed.

A table whose probe window is full (more scopes active within a minute than it holds)
falls back to counting that request in the worker's own memory, with one warning.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from switchboard.accounting.limits import WINDOW, Check, MemoryLimits, Verdict
from switchboard.shared_memory import EMPTY, FREED, SharedWords, key64

log = logging.getLogger("switchboard")

_PROBES = 16
_WIN = 4 + WINDOW  # fields of a window entry
_LAST, _TOTAL, _OLDEST, _BUCKETS = 1, 2, 3, 4
_COUNT = 3  # fields of a parallel-count entry: key, live, earliest expiry
_MEMBER = 3  # fields of a member entry: key, scope key, expiry

_scope_key = functools.lru_cache(maxsize=65536)(key64)  # scopes repeat; request ids do not


class SharedLimits:
    """`MemoryLimits`' interface over a table every forked worker shares; create it before forking."""

    def __init__(self, scopes: int = 8192, members: int = 16384) -> None:
        self._scopes = scopes
        self._members = members
        self._counts_at = scopes * _WIN
        self._members_at = self._counts_at + scopes * _COUNT
        self._shared = SharedWords(self._members_at + members * _MEMBER, "limits")
        self._q = self._shared.q
        self._locked = self._shared.locked
        self._local = MemoryLimits()  # overflow only
        self._warned = False

    def _find(self, at: int, entries: int, size: int, key: int,
              reusable: Callable[[int], bool] | None = None) -> tuple[int, bool]:
        """(offset, found) of `key`'s entry in a table; when absent, a claimable entry if `reusable`
        is given (never used, freed or `reusable(offset)`), else -1; -1 too when the probe window is full.
        Entries are never emptied again, so a never-used one ends the search."""
        q = self._q
        start = key % entries
        free = -1
        for i in range(_PROBES):
            off = at + ((start + i) % entries) * size
            k = q[off]
            if k == key:
                return off, True
            if free < 0 and reusable is not None and (k == EMPTY or k == FREED or reusable(off)):
                free = off
            if k == EMPTY:
                break
        return free, False

    def _overflow(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("the shared rate-limit table is full (more scopes active within a minute than it holds): "
                        "the overflow is counted per worker")

    # ---------------------------------------------------------------- windows

    def _window(self, scope: str, now: int, claim: bool) -> int:
        q = self._q
        key = _scope_key(scope)
        off, found = self._find(0, self._scopes, _WIN, key, (lambda o: q[o + _LAST] <= now - WINDOW) if claim else None)
        if off < 0:
            return -1
        last = q[off + _LAST]
        if not found or now - last >= WINDOW:
            q[off] = key
            q[off + _TOTAL] = q[off + _OLDEST] = 0
            q[off + _BUCKETS:off + _BUCKETS + WINDOW] = memoryview(bytes(8 * WINDOW)).cast("q")
        elif now > last:
            for sec in range(last + 1, now + 1):
                b = off + _BUCKETS + sec % WINDOW
                q[off + _TOTAL] -= q[b]
                q[b] = 0
            if q[off + _OLDEST] <= now - WINDOW:  # the oldest counted second left: find the next one
                q[off + _OLDEST] = next((s for s in range(now - WINDOW + 1, now + 1)
                                         if q[off + _BUCKETS + s % WINDOW]), 0)
        q[off + _LAST] = max(last, now)
        return off

    async def hit(self, checks: list[Check]) -> Verdict:
        now = int(time.time())
        verdict = self._locked(self._hit, checks, now)
        if verdict is None:
            self._overflow()
            return await self._local.hit(checks)
        return verdict

    def _hit(self, checks: list[Check], now: int) -> Verdict | None:
        q = self._q
        offsets = []
        for c in checks:
            off = self._window(c.scope, now, claim=True)
            if off < 0:
                return None
            offsets.append(off)
        used, reset = [], []
        failed, retry = None, 0.0
        for c, off in zip(checks, offsets):
            total = q[off + _TOTAL]
            used.append(total)
            oldest = q[off + _OLDEST]
            reset.append(float(oldest + WINDOW - now) if oldest else 0.0)
            if failed is None and c.amount > 0 and total + c.amount > c.limit:
                failed, retry, freed = c, float(WINDOW), 0
                for sec in range(now - WINDOW + 1, now + 1):
                    freed += q[off + _BUCKETS + sec % WINDOW]
                    if total - freed + c.amount <= c.limit:
                        retry = float(sec + WINDOW - now)
                        break
        if failed is None:
            for i, (c, off) in enumerate(zip(checks, offsets)):
                if c.amount:
                    q[off + _BUCKETS + now % WINDOW] += c.amount
                    q[off + _TOTAL] += c.amount
                    if not q[off + _OLDEST]:
                        q[off + _OLDEST] = now
                used[i] += c.amount
        return Verdict(failed is None, failed, retry, used, reset, now)

    async def adjust(self, scope: str, second: int, delta: int) -> None:
        now = int(time.time())
        if now - second >= WINDOW:
            return
        if not self._locked(self._adjust, scope, now, second, delta):
            await self._local.adjust(scope, second, delta)

    def _adjust(self, scope: str, now: int, second: int, delta: int) -> bool:
        off = self._window(scope, now, claim=False)
        if off < 0:
            return False
        self._q[off + _BUCKETS + second % WINDOW] += delta
        self._q[off + _TOTAL] += delta
        return True

    # --------------------------------------------------------------- parallel

    async def acquire(self, scope: str, limit: int, member: str, ttl: float) -> bool:
        now = int(time.time() * 1e6)
        admitted = self._locked(self._acquire, _scope_key(scope), limit, key64(f"{scope}\0{member}"), now,
                                now + int(ttl * 1e6))
        if admitted is None:
            self._overflow()
            return await self._local.acquire(scope, limit, member, ttl)
        return admitted

    def _acquire(self, scope: int, limit: int, member: int, now: int, expiry: int) -> bool | None:
        q = self._q
        count, found = self._find(self._counts_at, self._scopes, _COUNT, scope, lambda o: q[o + 1] <= 0)
        if count < 0:
            return None
        if not found:
            q[count], q[count + 1], q[count + 2] = scope, 0, expiry
        if q[count + 1] >= limit and q[count + 2] <= now:
            self._sweep(scope, count, now)
        if q[count + 1] >= limit:
            return False
        off, found = self._find(self._members_at, self._members, _MEMBER, member, lambda o: q[o + 2] <= now)
        if off < 0:
            return None
        if not found:
            if q[off] not in (EMPTY, FREED):  # an expired member of some scope: it leaves that scope's count
                self._drop(q[off + 1])
            q[off], q[off + 1] = member, scope
            q[count + 1] += 1
        q[off + 2] = expiry
        q[count + 2] = min(q[count + 2], expiry) if q[count + 1] > 1 else expiry
        return True

    def _drop(self, scope: int) -> None:
        count, found = self._find(self._counts_at, self._scopes, _COUNT, scope)
        if found:
            self._q[count + 1] = max(0, self._q[count + 1] - 1)

    def _sweep(self, scope: int, count: int, now: int) -> None:
        """Free the expired members of one scope (their worker died holding them)."""
        q = self._q
        earliest = 2**63 - 1
        for i in range(self._members):
            off = self._members_at + i * _MEMBER
            if q[off + 1] == scope and q[off] not in (EMPTY, FREED):
                if q[off + 2] <= now:
                    q[off] = FREED
                    q[count + 1] = max(0, q[count + 1] - 1)
                else:
                    earliest = min(earliest, q[off + 2])
        q[count + 2] = earliest

    async def release(self, scope: str, member: str) -> None:
        if not self._locked(self._release, key64(f"{scope}\0{member}")):
            await self._local.release(scope, member)

    def _release(self, member: int) -> bool:
        off, found = self._find(self._members_at, self._members, _MEMBER, member)
        if found:
            self._q[off] = FREED
            self._drop(self._q[off + 1])
        return found
