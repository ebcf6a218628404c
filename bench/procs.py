"""Processes under test: start them, time their start, read their memory, stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, interval: float = 0.005,
              headers: dict[str, str] | None = None) -> float:
    """Poll until `url` answers 2xx; returns the monotonic time it first did."""
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(url, headers=headers or {})
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return time.monotonic()
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def children(pid: int) -> list[int]:
    """All descendants of pid (workers of a multi-process server)."""
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return out
    for kid in kids:
        out.append(kid)
        out.extend(children(kid))
    return out


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MB, summed over the process and its descendants."""
    total = {"rss_mb": 0.0, "hwm_mb": 0.0}
    for p in [pid, *children(pid)]:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total["rss_mb"] += int(line.split()[1]) / 1024
                    elif line.startswith("VmHWM:"):
                        total["hwm_mb"] += int(line.split()[1]) / 1024
        except OSError:
            continue
    return {k: round(v, 1) for k, v in total.items()}


class Server:
    """A server process under test, started from a command and ready when `ready_url` answers 2xx."""

    def __init__(self, name: str, argv: list[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, ready_headers: dict[str, str] | None = None, timeout: float = 120) -> None:
        self.name = name
        self.log_path = log_path
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        try:
            ready = wait_http(ready_url, timeout, self.proc, headers=ready_headers)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{name} failed to start ({exc}); log:\n{log_path.read_text()[-3000:]}") from None
        self.start_seconds = ready - t0
        self.peak = {"rss_mb": 0.0, "hwm_mb": 0.0}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory(self) -> dict[str, float]:
        mem = memory_mb(self.pid)
        self.peak["rss_mb"] = max(self.peak["rss_mb"], mem["rss_mb"])
        self.peak["hwm_mb"] = max(self.peak["hwm_mb"], mem["hwm_mb"])
        return mem

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
