"""The embedded default store: one SQLite file, written from one dedicated thread.

SQLite connections are not shareable across threads and every call blocks, so
all work goes through a single-thread executor: the event loop only awaits.
A transaction runs whole in one job on that thread, and transactions queued
together share one COMMIT (group_commit.py); WAL checkpoints happen off the
write path (checkpoint.py). WAL mode lets readers (the CLI's `switchboard
logs`) run beside the gateway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from switchboard.storage.base import REQUEST_LOG_COLUMNS, Steps
from switchboard.storage.checkpoint import Checkpointer, checkpoint
from switchboard.storage.group_commit import GroupCommit
from switchboard.storage.schema import migrations

T = TypeVar("T")
log = logging.getLogger("switchboard.storage")
# Errors about the data of a row, not about the database (a locked or closed one): the other rows can be written.
_ROW_ERRORS = (OverflowError, UnicodeError, sqlite3.IntegrityError, sqlite3.DataError)

# Request log rows per database-thread job, written by one multi-row INSERT (its own transaction). Short jobs
# matter more than few commits: the writer thread shares the machine's cores with the event loop, and a
# request that arrives while the scheduler runs a long job on the loop's core waits for the whole job.
_LOG_SLICE = 20


@functools.lru_cache(maxsize=_LOG_SLICE)
def _insert_log_rows(n: int) -> str:
    row = f"({', '.join('?' * len(REQUEST_LOG_COLUMNS))})"
    return f"INSERT OR REPLACE INTO request_log ({', '.join(REQUEST_LOG_COLUMNS)}) VALUES {', '.join([row] * n)}"


def _insert_log_slice(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """One multi-row INSERT; if a row's data is refused, each row alone, and only the refused ones are dropped."""
    try:
        conn.execute(_insert_log_rows(len(rows)), [value for row in rows for value in row])
    except _ROW_ERRORS as exc:
        log.warning("a request log batch of %d rows was refused (%s); writing its rows one by one", len(rows), exc)
        for row in rows:
            try:
                conn.execute(_insert_log_rows(1), row)
            except _ROW_ERRORS as exc:
                log.error("dropped request log row %r: the database refused it: %s", row[0], exc)


class SQLiteStorage:
    name = "sqlite"
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._group = GroupCommit(self._executor, self._connection)
        self._checkpointer: Checkpointer | None = None

    async def transact(self, steps: Steps[T]) -> T:
        return await self._group.transact(steps)

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await self.run(lambda c: [dict(r) for r in c.execute(sql, args)])

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._connection())

    def _connection(self) -> sqlite3.Connection:
        """The database thread's connection, opened on first use."""
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            if self.path != ":memory:":
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer does it, off the write path
            conn.row_factory = sqlite3.Row
            self._conn = conn
        return self._conn

    async def start(self) -> None:
        await self.run(self._migrate)
        if self.path != ":memory:":
            self._checkpointer = Checkpointer(self.path, finish=lambda: self.run(checkpoint))
            self._checkpointer.start()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, statements in enumerate(migrations("sqlite"), start=1):
                if version in done:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.close()
            self._checkpointer = None

        def _close(conn: sqlite3.Connection) -> None:
            conn.close()

        if self._conn is not None:
            await self.run(_close)
            self._conn = None
        self._executor.shutdown(wait=True)

    async def ping(self) -> bool:
        try:
            return await self.run(lambda c: c.execute("SELECT 1").fetchone()[0] == 1)
        except sqlite3.Error:
            return False

    async def write_request_logs(self, rows: list[tuple]) -> None:
        for i in range(0, len(rows), _LOG_SLICE):
            part = rows[i:i + _LOG_SLICE]
            await self.run(lambda c, part=part: _insert_log_slice(c, part))

    async def recent_requests(self, limit: int = 50, **filters: Any) -> list[dict[str, Any]]:
        return await self.run(lambda c: query_recent(c, limit, **filters))


def query_recent(conn: sqlite3.Connection, limit: int = 50, *, key_id: str | None = None, model: str | None = None,
                 status: int | None = None, since: float | None = None) -> list[dict[str, Any]]:
    where, args = [], []
    if key_id:
        where.append("key_id = ?")
        args.append(key_id)
    if model:
        where.append("(model_requested = ? OR model_used = ?)")
        args += [model, model]
    if status:
        where.append("status = ?")
        args.append(status)
    if since:
        where.append("ts >= ?")
        args.append(since)
    sql = "SELECT * FROM request_log" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ts DESC LIMIT ?"
    return [dict(r) for r in conn.execute(sql, (*args, limit))]


def _enable_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL. Switching ignores the busy timeout, so processes opening a new file together retry."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
