"""WAL checkpoints for the SQLite store, off the write path.

SQLite normally checkpoints inside whichever COMMIT pushes the WAL past 1,000
pages, and with `synchronous=NORMAL` a checkpoint is where the fsyncs happen:
that one request would wait tens of milliseconds. The store turns automatic
checkpoints off and this runs one every second in two parts instead:

1. a PASSIVE checkpoint on its own connection and thread copies the bulk of the
   WAL into the database file while the gateway goes on writing (PASSIVE never
   blocks writers);
2. `finish`, given by the store, then checkpoints the few frames written
   meanwhile from the writing thread itself, between two transactions. Only a
   checkpoint that caught up with every frame lets the next writer start the
   WAL over, and a writer that never pauses would never let part 1 catch up.
   This part costs the writer about two fsyncs, once a second.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("switchboard.storage")


class Checkpointer:
    def __init__(self, path: str, finish: Callable[[], Awaitable[None]], interval_seconds: float = 1.0) -> None:
        self.path = path
        self.finish = finish
        self.interval_seconds = interval_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await loop.run_in_executor(self._executor, self._checkpoint)
                await self.finish()
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed (will retry): %s", exc)

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        checkpoint(self._conn)

    async def close(self) -> None:
        """Stop, and fold the WAL back into the database file."""
        if self._task is not None:
            self._task.cancel()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._checkpoint)
        except sqlite3.Error as exc:
            log.warning("final WAL checkpoint failed: %s", exc)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await loop.run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)


def checkpoint(conn: sqlite3.Connection) -> None:
    """A PASSIVE checkpoint: copies what it can of the WAL into the database file, never blocking writers."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
