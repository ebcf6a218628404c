"""Rate limits: requests and tokens per minute, over a sliding window.

A window is 60 one-second buckets; a request is admitted when, for every
limit that applies to it (the key's rpm and tpm, the key's per-model limits,
the gateway's per-model limits), the sum of the buckets of the last 60
seconds plus this request stays within the limit, and then it is counted in
all of them at once. Checking and counting happen in one step: a Lua script
in Redis when `storage.redis_url` is set (so a limit of N is N across every
replica), else under the event loop in memory (one process; `SharedLimits` in
shared_limits.py for the workers of `serve --workers N`).

Tokens are counted at admission as the prompt estimate plus the requested
`max_tokens` (as OpenAI does; without one, the most the model may write), and
corrected to the real usage at settlement.

Parallel-request caps use a set of in-flight request ids with an expiry
(a crashed replica's slots free themselves).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from switchboard.storage.redis_state import RedisState

WINDOW = 60


@dataclass(slots=True)
class Check:
    scope: str  # e.g. "key:abc:rpm", "model:gpt-4o:tpm"
    limit: int
    amount: int


@dataclass(slots=True)
class Verdict:
    admitted: bool
    failed: Check | None
    retry_after: float
    used: list[int]  # per check, after this request (if admitted) or before it (if refused)
    reset: list[float]  # per check: seconds until the oldest counted bucket leaves the window
    second: int  # the bucket this request was counted in


_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local window = tonumber(ARGV[1])
local n = #KEYS
local used, reset = {}, {}
local failed, retry = 0, 0
for i = 1, n do
  local limit = tonumber(ARGV[2 * i])
  local amount = tonumber(ARGV[2 * i + 1])
  local h = redis.call('HGETALL', KEYS[i])
  local total, stale, entries = 0, {}, {}
  for j = 1, #h, 2 do
    local sec = tonumber(h[j])
    if sec <= now - window then
      stale[#stale + 1] = h[j]
    else
      total = total + tonumber(h[j + 1])
      entries[#entries + 1] = {sec, tonumber(h[j + 1])}
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  table.sort(entries, function(a, b) return a[1] < b[1] end)
  used[i] = total
  reset[i] = 0
  if #entries > 0 then reset[i] = entries[1][1] + window - now end
  if failed == 0 and amount > 0 and total + amount > limit then
    failed = i
    retry = window
    local freed = 0
    for _, e in ipairs(entries) do
      freed = freed + e[2]
      if total - freed + amount <= limit then retry = e[1] + window - now break end
    end
  end
end
if failed == 0 then
  for i = 1, n do
    local amount = tonumber(ARGV[2 * i + 1])
    if amount ~= 0 then redis.call('HINCRBY', KEYS[i], now, amount) end
    redis.call('EXPIRE', KEYS[i], window + 2)
    used[i] = used[i] + amount
  end
end
local out = {failed, retry, now}
for i = 1, n do out[#out + 1] = used[i]; out[#out + 1] = reset[i] end
return out
"""

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""


class _Window:
    """One scope's counts per second, with their sum and their oldest second kept as they change: a check reads
    them in O(1), and a bucket that leaves the window is dropped by the first check after it leaves."""

    __slots__ = ("buckets", "oldest", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.oldest = 0  # meaningless while `buckets` is empty

    def expire(self, now: int) -> None:
        if self.buckets and self.oldest <= now - WINDOW:
            buckets = self.buckets
            for sec in [s for s in buckets if s <= now - WINDOW]:
                self.total -= buckets.pop(sec)
            self.oldest = min(buckets, default=0)

    def add(self, sec: int, amount: int) -> None:
        buckets = self.buckets
        self.oldest = min(self.oldest, sec) if buckets else sec
        buckets[sec] = buckets.get(sec, 0) + amount
        self.total += amount


class MemoryLimits:
    """One process's windows and slots (no Redis configured)."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._slots: dict[str, dict[str, float]] = {}

    async def hit(self, checks: list[Check]) -> Verdict:
        now = int(time.time())
        used, reset = [], []
        failed, retry = None, 0.0
        for c in checks:
            window = self._windows.get(c.scope)
            if window is None:
                window = self._windows[c.scope] = _Window()
            window.expire(now)
            total = window.total
            used.append(total)
            reset.append(float(window.oldest + WINDOW - now) if window.buckets else 0.0)
            if failed is None and c.amount > 0 and total + c.amount > c.limit:
                failed, retry, freed = c, float(WINDOW), 0
                buckets = window.buckets
                for sec in sorted(buckets):
                    freed += buckets[sec]
                    if total - freed + c.amount <= c.limit:
                        retry = float(sec + WINDOW - now)
                        break
        if failed is None:
            for i, c in enumerate(checks):
                if c.amount:
                    self._windows[c.scope].add(now, c.amount)
                used[i] += c.amount
        return Verdict(failed is None, failed, retry, used, reset, now)

    async def adjust(self, scope: str, second: int, delta: int) -> None:
        window = self._windows.get(scope)
        if window is not None and second in window.buckets:
            window.buckets[second] += delta
            window.total += delta

    async def acquire(self, scope: str, limit: int, member: str, ttl: float) -> bool:
        slots = self._slots.setdefault(scope, {})
        now = time.monotonic()
        for m in [m for m, exp in slots.items() if exp <= now]:
            del slots[m]
        if len(slots) >= limit:
            return False
        slots[member] = now + ttl
        return True

    async def release(self, scope: str, member: str) -> None:
        self._slots.get(scope, {}).pop(member, None)


class RedisLimits:
    """The same windows and slots in Redis, shared by every replica."""

    def __init__(self, redis: RedisState) -> None:
        self.redis = redis
        self._hit: Any = None
        self._acquire: Any = None

    def _scripts(self) -> None:
        if self._hit is None:
            self._hit = self.redis.client.register_script(_HIT)
            self._acquire = self.redis.client.register_script(_ACQUIRE)

    async def hit(self, checks: list[Check]) -> Verdict:
        self._scripts()
        keys = [self.redis.key("rl", c.scope) for c in checks]
        args: list[Any] = [WINDOW]
        for c in checks:
            args += [c.limit, c.amount]
        out = [int(x) for x in await self._hit(keys=keys, args=args)]
        failed_index, retry, now = out[0], out[1], out[2]
        used = out[3::2]
        reset = [float(x) for x in out[4::2]]
        failed = checks[failed_index - 1] if failed_index else None
        return Verdict(failed is None, failed, float(retry), used, reset, now)

    async def adjust(self, scope: str, second: int, delta: int) -> None:
        key = self.redis.key("rl", scope)
        if int(time.time()) - second < WINDOW:
            await self.redis.client.hincrby(key, str(second), delta)

    async def acquire(self, scope: str, limit: int, member: str, ttl: float) -> bool:
        self._scripts()
        return bool(await self._acquire(keys=[self.redis.key("par", scope)], args=[limit, ttl, member]))

    async def release(self, scope: str, member: str) -> None:
        await self.redis.client.zrem(self.redis.key("par", scope), member)


def reset_text(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``."""
    s = max(0, int(math.ceil(seconds)))
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"
