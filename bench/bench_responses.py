"""What `/v1/responses` adds over `/v1/chat/completions`: translation, and storing the Response.

Run: .venv/bin/python bench/bench_responses.py [--n 400] [--rounds 3]

Starts the zero-config demo gateway (SQLite in a temporary directory) and sends, one
at a time on one keep-alive connection, the same one-line prompt as a chat completion
(the baseline), as a Response with `"store": false`, and as a stored Response, round
after round. Prints the median latency of each per round, the medians over rounds, and
the differences against the baseline measured in the same round.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TARGETS = {
    "chat completion (baseline)": ("/v1/chat/completions",
                                   {"model": "demo-small", "messages": [{"role": "user", "content": "hi"}]}),
    "response, store=false": ("/v1/responses", {"model": "demo-small", "input": "hi", "store": False}),
    "response, stored": ("/v1/responses", {"model": "demo-small", "input": "hi"}),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _median_ms(conn: http.client.HTTPConnection, path: str, body: dict, n: int) -> float:
    data = json.dumps(body)
    times = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        conn.request("POST", path, body=data, headers={"content-type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status} {payload[:200]!r}")
        if i >= 20:  # the first requests warm up
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}  # the demo, not real providers
        proc = subprocess.Popen([sys.executable, "-m", "switchboard", "serve", "--port", str(port)], cwd=tmp, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            rounds: dict[str, list[float]] = {name: [] for name in TARGETS}
            for r in range(args.rounds):
                for name, (path, body) in TARGETS.items():
                    rounds[name].append(_median_ms(conn, path, body, args.n))
                print(f"round {r + 1}: " + ", ".join(f"{name} {v[-1]:.3f} ms" for name, v in rounds.items()))
        finally:
            proc.terminate()
            proc.wait(10)
    base = rounds["chat completion (baseline)"]
    print(f"p50 latency, median of {args.rounds} rounds x {args.n} sequential requests (the demo's simulated model):")
    for name, values in rounds.items():
        diff = statistics.median(v - b for v, b in zip(values, base))
        print(f"  {name:28s} {statistics.median(values):8.3f} ms   {diff:+.3f} ms against the baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
