"""Hedged requests: if an attempt is slow, race a second one on another deployment.

The first attempt starts at once. If it has not finished after `delay`
(a fixed number, or the deployment's observed latency percentile), a second
attempt starts elsewhere. The first success wins and the other is cancelled
(its connection is closed, so a provider that stops generating on disconnect
stops billing). If the first attempt *fails* before the delay, there is no
hedge: ordinary failover takes over. Both attempts count against the
request's retry budget and both appear in its attempt log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from switchboard.routing.balancing import DeploymentStats
from switchboard.routing.policy import HedgePolicy

T = TypeVar("T")


def hedge_delay(policy: HedgePolicy, stats: DeploymentStats) -> float:
    """Seconds to wait before hedging an attempt on the deployment `stats` describes."""
    if policy.delay is not None:
        return policy.delay
    observed = stats.percentile(policy.percentile)
    if observed is None:
        return policy.max_delay
    return min(policy.max_delay, max(policy.min_delay, observed))


async def race(first: Awaitable[T], second: Callable[[], Awaitable[T] | None], delay: float,
               discard: Callable[[T], Awaitable[None]]) -> tuple[T, int, int]:
    """Run `first`; after `delay`, also `second()` (None: nowhere to hedge). Returns (result, winner, started).

    Raises the last failure if every started attempt fails. Losers are
    cancelled; a loser that succeeded at the same moment is handed to `discard`.
    """
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task] = [loop.create_task(first)]
    winner: asyncio.Task | None = None
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done:
            hedge = second()
            if hedge is not None:
                tasks.append(loop.create_task(hedge))
        last_error: BaseException | None = None
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                if t in done:
                    exc = t.exception()
                    if exc is None and winner is None:
                        winner = t
                    elif exc is not None:
                        last_error = exc
            if winner is not None:
                break
        if winner is None:
            assert last_error is not None
            raise last_error
        return winner.result(), tasks.index(winner), len(tasks)
    finally:
        losers = [t for t in tasks if t is not winner and not t.done()]
        for t in losers:
            t.cancel()
        if losers:
            await asyncio.wait(losers)
        for t in tasks:
            if t is not winner and t.done() and not t.cancelled() and t.exception() is None:
                await discard(t.result())
