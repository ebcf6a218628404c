"""Record mode: append every live chat request and its answer to a JSONL file.

The file is exactly what the replay provider reads (`providers/replay.py`), so a
team can record a day of real traffic and later replay it offline, or pin an
app's tests to recorded answers. Config (top-level section `record`):

    record:
      path: recordings.jsonl     # required; appended to, created if missing
      models: [gpt-4o]           # optional: only requests for these model names (default: all)

Each line: {"ts", "request_id", "model" (the model that answered), "requested",
"messages", "response", "usage": {"prompt_tokens", "completion_tokens"},
"latency_ms"}. Lines are written by one background thread, never on the event
loop; `close` flushes what is queued, so a clean shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from switchboard.config import GatewayConfig
    from switchboard.context import RequestContext
    from switchboard.core.request import ChatRequest

log = logging.getLogger("switchboard.record")

_STOP = object()


class Recorder:
    def __init__(self, path: str, models: frozenset[str] | None = None) -> None:
        self.path = path
        self.models = models
        self.written = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Recorder:
        from switchboard.observers import section

        sec = section(config, "record")
        path = sec.str("path", required=True)
        models = sec.str_list("models")
        sec.done()
        unknown = [m for m in models if m not in config.models and m not in (config.raw.get("routers") or {})]
        if unknown:
            raise sec.error("models", f"{unknown[0]!r} is not a configured model")
        return cls(path or "", frozenset(models) if models else None)

    async def start(self) -> None:
        await asyncio.to_thread(_touch, self.path)  # fail at start-up, not on the first request
        self._thread = threading.Thread(target=self._write_loop, name="switchboard-record", daemon=True)
        self._thread.start()

    def observe(self, request: ChatRequest, ctx: RequestContext, text: str) -> None:
        entry = ctx.entry
        if self.models is not None and entry.model_requested not in self.models:
            return
        self._queue.put({
            "ts": round(entry.ts, 3), "request_id": entry.request_id, "model": entry.model_used,
            "requested": entry.model_requested, "messages": request.body["messages"], "response": text,
            "usage": {"prompt_tokens": entry.prompt_tokens, "completion_tokens": entry.completion_tokens},
            "latency_ms": round(entry.latency_ms or ctx.elapsed_ms(), 3),
        })

    def _write_loop(self) -> None:
        with open(self.path, "ab") as f:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                batch = [item]
                while True:  # drain what else is queued into one write
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        self._flush(f, batch)
                        return
                    batch.append(more)
                self._flush(f, batch)

    def _flush(self, f, batch: list) -> None:
        try:
            f.write(b"".join(orjson.dumps(rec) + b"\n" for rec in batch))
            f.flush()
            self.written += len(batch)
        except (OSError, TypeError) as exc:
            log.error("record mode: cannot write %d record(s) to %s: %s", len(batch), self.path, exc)

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join, 10)
            self._thread = None


def _touch(path: str) -> None:
    with open(path, "ab"):
        pass
