"""Server-sent events: an incremental decoder for upstream streams and the encoder we answer with."""

from __future__ import annotations

from collections.abc import Iterator

import orjson


class SSEDecoder:
    """Feed it bytes as they arrive; it yields ``(event, data)`` for every complete event."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[tuple[str | None, str]]:
        buf = self._buffer + chunk if self._buffer else chunk
        tail = b""
        if buf.endswith(b"\r"):  # maybe the first half of a \r\n split between reads: decide with the next one
            buf, tail = buf[:-1], b"\r"
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            event: str | None = None
            data: list[str] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    value = line[5:]
                    data.append((value[1:] if value.startswith(b" ") else value).decode("utf-8", "replace"))
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode("utf-8", "replace")
            if data or event:
                yield event, "\n".join(data)
        self._buffer = buf[start:] + tail


def encode_data(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def encode_event(event: str, payload: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"
