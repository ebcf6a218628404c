"""The load generator: wrk (C, its own process) with bench/post.lua, parsed into one dict per run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post.lua"


def wrk(url: str, body: bytes, *, connections: int, seconds: float, threads: int = 1, auth: str | None = None,
        delay_ms: int = 0, timeout_s: int = 10) -> dict:
    """One wrk run; returns requests/s, latency percentiles (ms) and error counts."""
    env = {**os.environ, "BENCH_BODY": body.decode(), "BENCH_AUTH": auth or "", "BENCH_DELAY_MS": str(delay_ms)}
    argv = [shutil.which("wrk") or "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--timeout", f"{timeout_s}s", "-s", str(LUA), url]
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk produced no summary (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")
    raw = json.loads(line[len("BENCH_JSON "):])
    errors = raw["err_connect"] + raw["err_read"] + raw["err_write"] + raw["err_status"] + raw["err_timeout"]
    secs = raw["duration_us"] / 1e6
    return {
        "rps": round(raw["requests"] / secs, 1), "requests": raw["requests"], "errors": errors,
        "non_2xx": raw["err_status"], "connections": connections,
        "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p999_us"] / 1000, "mean_ms": round(raw["mean_us"] / 1000, 3), "max_ms": raw["max_us"] / 1000,
    }
