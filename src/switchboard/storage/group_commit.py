"""Group commit for SQLite: the transactions that queue up while the database thread is busy
share one hop to that thread and one COMMIT.

Under load, every request writes (a credit reservation, then its charge). One
executor round trip and one COMMIT per transaction would make the database
thread's wake-ups and WAL appends the gateway's bottleneck. Instead a
transaction joins a queue; one drain job on the database thread takes
everything queued, runs each transaction inside its own SAVEPOINT (so one that
raises rolls back alone), commits them all at once, and hands the results back
to the event loop in one call. A caller learns its result only after that
COMMIT, so nothing is reported done before it is durable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from switchboard.storage.base import Steps

T = TypeVar("T")

_Outcome = tuple[asyncio.Future, Any, BaseException | None]


class GroupCommit:
    def __init__(self, executor: Executor, connection: Callable[[], sqlite3.Connection]) -> None:
        self._executor = executor
        self._connection = connection
        self._queue: list[tuple[Steps[Any], asyncio.Future]] = []
        self._lock = threading.Lock()  # the queue and the flag are shared with the database thread
        self._draining = False

    async def transact(self, steps: Steps[T]) -> T:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._queue.append((steps, future))
            start = not self._draining
            self._draining = True
        if start:
            loop.run_in_executor(self._executor, self._drain, loop)
        return await future

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the database thread: run batches until the queue is empty."""
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            try:
                outcomes = _commit_batch(self._connection(), batch)
            except BaseException as exc:  # the connection itself failed: every caller gets the error
                outcomes = [(future, None, exc) for _, future in batch]
            loop.call_soon_threadsafe(_deliver, outcomes)


def _commit_batch(conn: sqlite3.Connection, batch: list[tuple[Steps[Any], asyncio.Future]]) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for steps, future in batch:
            if future.cancelled():  # its caller is gone before it started: nothing to do
                continue
            conn.execute("SAVEPOINT tx")
            try:
                value = drive(conn, steps)
            except Exception as exc:
                conn.execute("ROLLBACK TO tx")
                conn.execute("RELEASE tx")
                outcomes.append((future, None, exc))
                continue
            conn.execute("RELEASE tx")
            outcomes.append((future, value, None))
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return [(future, None, exc) for future, _, _ in outcomes]
    return outcomes


def drive(conn: sqlite3.Connection, steps: Steps[T]) -> T:
    """Run a transaction's statements on `conn` and return the generator's value."""
    result: Any = None
    while True:
        try:
            kind, sql, args = steps.send(result)
        except StopIteration as done:
            return done.value
        cursor = conn.execute(sql, args)
        if kind == "rowcount":
            result = cursor.rowcount
        elif kind == "one":
            row = cursor.fetchone()
            result = dict(row) if row is not None else None
        else:
            result = [dict(r) for r in cursor]


def _deliver(outcomes: list[_Outcome]) -> None:
    for future, value, exc in outcomes:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
