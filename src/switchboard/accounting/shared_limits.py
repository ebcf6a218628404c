"""Rate limits and parallel caps shared by the workers of one host, without Redis.

`switchboard serve --workers N` forks N processes. Counting in each process's memory
would let a limit of N admit up to N x workers, so the parent maps one table into
anonymous shared memory before forking (every worker, including a restarted one,
inherits the mapping) and each check-and-count runs under an exclusive POSIX record
lock (`lockf`) on a file only this table uses. The kernel drops a record lock when its
holder dies, so a crashed worker cannot wedge the others; a hit holds the lock for a
few microseconds (no I/O, no await inside), so it is taken on the event loop.

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

import fcntl
import functools
import hashlib
import logging
import mmap
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

from switchboard.accounting.limits import WINDOW, Check, MemoryLimits, Verdict

log = logging.getLogger("switchboard")
_T = TypeVar("_T")

_PROBES = 16
_WIN = 4 + WINDOW  # fields of a window entry
_LAST, _TOTAL, _OLDEST, _BUCKETS = 1, 2, 3, 4
_COUNT = 3  # fields of a parallel-count entry: key, live, earliest expiry
_MEMBER = 3  # fields of a member entry: key, scope key, expiry


_EMPTY, _FREED = 0, -1  # keys of an entry never used (ends a probe) and of a freed one


def _key(text: str) -> int:
    """A 64-bit key, never `_EMPTY` or `_FREED`."""
    k = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)
    return 1 if k in (_EMPTY, _FREED) else k


_scope_key = functools.lru_cache(maxsize=65536)(_key)  # scopes repeat; request ids do not


class SharedLimits:
    """`MemoryLimits`' interface over a table every forked worker shares; create it before forking."""

    def __init__(self, scopes: int = 8192, members: int = 16384) -> None:
        self._scopes = scopes
        self._members = members
        self._counts_at = scopes * _WIN
        self._members_at = self._counts_at + scopes * _COUNT
        self._map = mmap.mmap(-1, (self._members_at + members * _MEMBER) * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self._q = memoryview(self._map).cast("q")
        self._lock_file = tempfile.TemporaryFile(prefix="switchboard-limits-")
        self._fd = self._lock_file.fileno()
        self._local = MemoryLimits()  # overflow only
        self._warned = False

    def _locked(self, work: Callable[..., _T], *args: Any) -> _T:
        """`work(*args)` under the table's lock."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            return work(*args)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

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
            if free < 0 and reusable is not None and (k == _EMPTY or k == _FREED or reusable(off)):
                free = off
            if k == _EMPTY:
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
        admitted = self._locked(self._acquire, _scope_key(scope), limit, _key(f"{scope}\0{member}"), now,
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
            if q[off] not in (_EMPTY, _FREED):  # an expired member of some scope: it leaves that scope's count
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
            if q[off + 1] == scope and q[off] not in (_EMPTY, _FREED):
                if q[off + 2] <= now:
                    q[off] = _FREED
                    q[count + 1] = max(0, q[count + 1] - 1)
                else:
                    earliest = min(earliest, q[off + 2])
        q[count + 2] = earliest

    async def release(self, scope: str, member: str) -> None:
        if not self._locked(self._release, _key(f"{scope}\0{member}")):
            await self._local.release(scope, member)

    def _release(self, member: int) -> bool:
        off, found = self._find(self._members_at, self._members, _MEMBER, member)
        if found:
            self._q[off] = _FREED
            self._drop(self._q[off + 1])
        return found
