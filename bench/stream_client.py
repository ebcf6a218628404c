"""Many concurrent SSE streams, each timed to its first byte of body (TTFT), from a process of its own.

    python bench/stream_client.py --port P --streams 1000 --ramp 2 [--auth KEY] [--path /v1/chat/completions]

Connections are opened first (untimed); then stream i is requested at
i * ramp / streams seconds, so after the ramp all of them are open at once.
TTFT is measured from writing the request to the first body byte; the run
prints one JSON line with percentiles, the peak number of open streams and
any failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httptools


class _Stream(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.sent = 0.0
        self.first_body = 0.0
        self.status = 0
        self.done = asyncio.get_running_loop().create_future()
        self.chunks = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.done.done():
                self.done.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.first_body:
            self.first_body = time.perf_counter()
        self.chunks += body.count(b"data: ")

    def on_message_complete(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def run(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    body = args.body.encode()
    head = (f"POST {args.path} HTTP/1.1\r\nhost: {args.host}:{args.port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n" + (f"authorization: Bearer {args.auth}\r\n" if args.auth else "")
            + "\r\n").encode() + body
    conns: list[_Stream] = []
    for i in range(0, args.streams, 100):  # connect in batches so the listen backlog never overflows
        batch = await asyncio.gather(*(loop.create_connection(_Stream, args.host, args.port)
                                       for _ in range(min(100, args.streams - i))))
        conns.extend(p for _, p in batch)
    open_now = 0
    peak = 0

    async def one(i: int, s: _Stream) -> None:
        nonlocal open_now, peak
        await asyncio.sleep(i * args.ramp / args.streams)
        s.sent = time.perf_counter()
        s.transport.write(head)  # type: ignore[union-attr]
        open_now += 1
        peak = max(peak, open_now)
        try:
            await asyncio.wait_for(s.done, args.timeout)
        finally:
            open_now -= 1

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i, s) for i, s in enumerate(conns)), return_exceptions=True)
    wall = time.perf_counter() - t0
    ok = [s for s, r in zip(conns, results) if r is None and s.status == 200 and s.first_body]
    ttft = [(s.first_body - s.sent) * 1000 for s in ok]
    for s in conns:
        if s.transport is not None:
            s.transport.close()
    failures = [repr(r) for r in results if r is not None][:3] + [f"HTTP {s.status}" for s in conns if s.status not in (0, 200)][:3]
    return {"streams": args.streams, "completed": len(ok), "failed": args.streams - len(ok), "peak_open": peak,
            "wall_s": round(wall, 2), "chunks": sum(s.chunks for s in ok),
            "ttft_p50_ms": round(_pct(ttft, 50), 3), "ttft_p90_ms": round(_pct(ttft, 90), 3),
            "ttft_p99_ms": round(_pct(ttft, 99), 3), "ttft_max_ms": round(max(ttft, default=float("nan")), 3),
            "failure_examples": failures}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--auth", default="")
    p.add_argument("--body", required=True)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--ramp", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
