"""Real processes for tests: the mock upstream and the gateway, each a `switchboard` subprocess on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routellm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def wait_http(url: str, timeout: float = 15, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not come up")


class Proc:
    def __init__(self, args: list[str], url: str, log_path: Path, env: dict[str, str] | None = None,
                 health: str = "/health") -> None:
        self.url = url
        self.log_path = log_path
        self._log = open(log_path, "w")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "switchboard", *args], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=full_env, cwd=str(log_path.parent))
        try:
            wait_http(url + health, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"failed to start: {' '.join(args)}\n{log_path.read_text()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int | None = None, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class MockProc(Proc):
    def __init__(self, tmp: Path, models: dict[str, dict[str, Any]] | None = None, args: list[str] | None = None) -> None:
        port = free_port()
        spec = tmp / f"mock-{port}.yaml"
        spec.write_text(yaml.safe_dump(models or {}))
        super().__init__(["mock-upstream", "--port", str(port), "--models", str(spec), "--seed", "7", *(args or [])],
                         f"http://127.0.0.1:{port}", tmp / f"mock-{port}.log", health="/_mock/stats")

    def set_behaviour(self, behaviours: dict[str, Any]) -> None:
        status, _, body = http("POST", self.url + "/_mock/behaviour", behaviours)
        assert status == 200, body

    def stats(self) -> dict[str, Any]:
        return json.loads(http("GET", self.url + "/_mock/stats")[2])

    def reset(self) -> None:
        http("POST", self.url + "/_mock/reset", {})


class GatewayProc(Proc):
    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                 name: str = "gateway") -> None:
        port = free_port()
        config = dict(config)
        config.setdefault("storage", {}).setdefault("sqlite_path", str(tmp / f"{name}.db"))
        self.db = config["storage"]["sqlite_path"]
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.config_path = path
        super().__init__(["serve", "--config", str(path), "--port", str(port)], f"http://127.0.0.1:{port}",
                         tmp / f"{name}.log", env=env)

    def requests_logged(self) -> list[dict[str, Any]]:
        import sqlite3

        conn = sqlite3.connect(self.db)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM request_log ORDER BY ts")]
        finally:
            conn.close()


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
