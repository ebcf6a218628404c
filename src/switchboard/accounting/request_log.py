"""The request log: every request, success or failure, written in batches off the hot path.

`record` turns the finished request's entry into its row (a few microseconds on
every request, rather than a burst of thousands at each flush) and appends it; a
background task hands full batches to the store every `flush_seconds` (or
sooner when the batch is large), and `close` flushes what is left, so a clean
shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import logging

from switchboard.storage.base import RequestLogEntry, Storage

log = logging.getLogger("switchboard.requestlog")


class RequestLog:
    def __init__(self, storage: Storage, *, flush_seconds: float = 0.2, max_batch: int = 1000) -> None:
        self.storage = storage
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self._pending: list[tuple] = []
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        self._writing = asyncio.Lock()
        self.written = 0

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def record(self, entry: RequestLogEntry) -> None:
        self._pending.append(entry.row())
        if len(self._pending) >= self.max_batch and self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while not self._closing:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.flush_seconds)
            except TimeoutError:
                pass
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every entry recorded so far. A caller that reads the log next (feedback on a request, a usage
        report) waits for a write already under way too: its entries have left `_pending` but are not yet stored."""
        async with self._writing:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                try:
                    await self.storage.write_request_logs(batch)
                    self.written += len(batch)
                except Exception:
                    log.exception("writing %d request log entries failed; will retry", len(batch))
                    self._pending[:0] = batch
                    return

    async def close(self) -> None:
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
