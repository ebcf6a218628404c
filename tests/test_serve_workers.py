"""`switchboard serve --workers N`: several processes on one port, drained together on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from support import MockProc, free_port, http, wait_for, wait_http

MASTER = "sk-test-master-0123456789"


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def test_workers_share_the_port_log_every_request_and_drain_on_sigterm(tmp_path):
    mock = MockProc(tmp_path, {"up": {"reply": "hello from a worker"}, "slow-up": {"latency": 1.0}})
    try:
        port = free_port()
        db = tmp_path / "workers.db"
        config = tmp_path / "workers.yaml"
        config.write_text(yaml.safe_dump({
            "auth": {"master_key": "${SB_MASTER}"},
            "storage": {"sqlite_path": str(db)},
            "models": {
                "m": {"deployments": [{"provider": "openai", "model": "up", "base_url": mock.url + "/v1"}],
                      "pricing": {"input_per_mtok": 10_000.0, "output_per_mtok": 20_000.0}},
                "slow": {"deployments": [{"provider": "openai", "model": "slow-up", "base_url": mock.url + "/v1"}]},
            },
        }))
        log_path = tmp_path / "workers.log"
        proc = subprocess.Popen([sys.executable, "-m", "switchboard", "serve", "--config", str(config), "--port",
                                 str(port), "--workers", "2"], stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                                env={**os.environ, "SB_MASTER": MASTER, "PYTHONUNBUFFERED": "1"})
        try:
            wait_http(f"http://127.0.0.1:{port}/ready", proc=proc)
            # The first worker may answer /ready while the second is still starting.
            workers = wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), timeout=10)
            assert workers and len(workers) == 2, (_children(proc.pid), proc.poll(), log_path.read_text())

            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER, max_retries=0)
            for _ in range(20):
                # a fresh connection each time, so the kernel may hand it to either worker
                with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER, max_retries=0) as c:
                    answer = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
                assert answer.choices[0].message.content == "hello from a worker"

            # A prepaid key's credit holds in total across the workers: reservations are conditional
            # updates in the one SQLite file, so concurrent requests on both workers cannot overdraw it.
            status, _, body = http("POST", f"http://127.0.0.1:{port}/admin/keys", {"name": "prepaid", "credits_usd": 1},
                                   headers={"authorization": f"Bearer {MASTER}"})
            assert status == 201, body
            prepaid = json.loads(body)
            outcomes: list[int] = []

            def prepaid_call() -> None:
                with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=prepaid["key"], max_retries=0) as c:
                    try:
                        c.chat.completions.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
                        outcomes.append(200)
                    except openai.APIStatusError as exc:
                        outcomes.append(exc.status_code)

            callers = [threading.Thread(target=prepaid_call) for _ in range(24)]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join(15)
            assert len(outcomes) == 24 and set(outcomes) == {200, 402}, outcomes
            status, _, body = http("GET", f"http://127.0.0.1:{port}/admin/keys/{prepaid['id']}",
                                   headers={"authorization": f"Bearer {MASTER}"})
            credit = json.loads(body)["credit"]
            print(f"prepaid $1 over 2 workers: {outcomes.count(200)} served, {outcomes.count(402)} refused, "
                  f"${credit['balance_usd']:.4f} left")
            assert credit["balance_usd"] >= 0 and credit["reserved_usd"] == 0, credit

            # A request in flight when SIGTERM arrives is finished, not dropped.
            result: dict = {}

            def slow_call() -> None:
                result["answer"] = client.chat.completions.create(
                    model="slow", messages=[{"role": "user", "content": "take your time"}])

            t = threading.Thread(target=slow_call)
            t.start()
            time.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            # while the workers drain, a new connection is refused at once: it is not left to hang in the backlog
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            t.join(10)
            assert result["answer"].choices[0].message.content
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log = log_path.read_text()
        assert "rate limits and breakers shared in memory by the workers" in log
        assert log.count("switchboard listening on") == 2
        conn = sqlite3.connect(db)
        try:
            logged = conn.execute("SELECT COUNT(*) FROM request_log WHERE status = 200").fetchone()[0]
        finally:
            conn.close()
        assert logged == 21 + outcomes.count(200)  # both workers wrote their requests to the one request log
        assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # reaped by the parent
    finally:
        mock.stop()


@contextlib.contextmanager
def _two_workers(config: Path, port: int) -> Iterator[subprocess.Popen]:
    """`switchboard serve --workers 2` on `config`, ready, stopped (SIGTERM) on exit."""
    proc = subprocess.Popen([sys.executable, "-m", "switchboard", "serve", "--config", str(config), "--port",
                             str(port), "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "SB_MASTER": MASTER})
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", proc=proc)
        assert wait_for(lambda: len(_children(proc.pid)) == 2, timeout=10)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _kill_workers(proc: subprocess.Popen, port: int) -> None:
    """SIGKILL every worker and wait until the parent's replacements serve."""
    killed = _children(proc.pid)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: len(set(_children(proc.pid)) - set(killed)) == 2, timeout=15)
    wait_http(f"http://127.0.0.1:{port}/ready", proc=proc)


def _calls(n: int, call) -> list[int]:
    """Run `call` n times at once, each on its own thread; the status of each (0: the connection dropped)."""
    outcomes: list[int] = []

    def one() -> None:
        try:
            call()
            outcomes.append(200)
        except openai.APIStatusError as exc:
            outcomes.append(exc.status_code)
        except openai.APIConnectionError:
            outcomes.append(0)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return outcomes


def test_rate_limits_and_parallel_caps_hold_across_workers_without_redis(tmp_path):
    mock = MockProc(tmp_path, {"up": {"reply": "ok"}, "slow-up": {"latency": 1.5}, "stuck-up": {"latency": 60}})
    try:
        port = free_port()
        config = tmp_path / "limits.yaml"
        config.write_text(yaml.safe_dump({
            "auth": {"master_key": "${SB_MASTER}"},
            "accounts": {"reservation_ttl_seconds": 3},
            "storage": {"sqlite_path": str(tmp_path / "limits.db")},
            "models": {
                "m": {"deployments": [{"provider": "openai", "model": "up", "base_url": mock.url + "/v1"}]},
                "slow": {"deployments": [{"provider": "openai", "model": "slow-up", "base_url": mock.url + "/v1"}]},
                "stuck": {"deployments": [{"provider": "openai", "model": "stuck-up", "base_url": mock.url + "/v1"}]},
            },
        }))
        with _two_workers(config, port) as proc:
            admin = {"authorization": f"Bearer {MASTER}"}
            status, _, body = http("POST", f"http://127.0.0.1:{port}/admin/keys", {"name": "rpm", "rpm": 8},
                                   headers=admin)
            assert status == 201, body
            rpm_key = json.loads(body)["key"]
            status, _, body = http("POST", f"http://127.0.0.1:{port}/admin/keys", {"name": "par", "max_parallel": 2},
                                   headers=admin)
            assert status == 201, body
            par_key = json.loads(body)["key"]

            def call(key: str, model: str):
                def go() -> None:
                    # a fresh connection per call, so the kernel hands the calls to both workers
                    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0) as c:
                        c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
                return go

            # 8 requests per minute means 8 in total, not 8 per worker.
            outcomes = _calls(24, call(rpm_key, "m"))
            assert sorted(outcomes) == [200] * 8 + [429] * 16, outcomes
            # 2 at a time means 2 in flight across both workers.
            outcomes = _calls(6, call(par_key, "slow"))
            assert sorted(outcomes) == [200] * 2 + [429] * 4, outcomes
            # The slots are freed when the requests end, whichever worker served them.
            assert _calls(2, call(par_key, "slow")) == [200, 200]

            # Workers killed while holding both slots: the restarted workers find them taken until the
            # holds expire (accounts.reservation_ttl_seconds), then the key is served again.
            stuck = [threading.Thread(target=_calls, args=(1, call(par_key, "stuck"))) for _ in range(2)]
            for t in stuck:
                t.start()
            assert wait_for(lambda: mock.stats()["by_model"].get("stuck-up") == 2, timeout=10)
            _kill_workers(proc, port)
            started = time.monotonic()
            assert _calls(1, call(par_key, "m")) == [429]
            assert wait_for(lambda: _calls(1, call(par_key, "m")) == [200], timeout=10)
            assert time.monotonic() - started > 1
    finally:
        mock.stop()


@pytest.mark.parametrize("wildcard", [False, True], ids=["configured", "wildcard"])
def test_a_breaker_opened_by_one_worker_is_open_in_every_worker_without_redis(tmp_path, wildcard):
    mock = MockProc(tmp_path, {"bad-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
                               "good-up": {"reply": "good"}, "bad-up-good": {"reply": "good"}})
    try:
        port = free_port()
        config = tmp_path / "breakers.yaml"
        policy = {"strategy": "ordered", "breaker": {"failures": 1, "cooldown": 60}}
        up = {"provider": "openai", "base_url": mock.url + "/v1"}
        # a model made by a wildcard after start is shared like a configured one (each worker makes its own)
        models = ({"w/*": {**policy, "pricing": {"input_per_mtok": 0, "output_per_mtok": 0},
                           "deployments": [{**up, "model": "*"}, {**up, "model": "*-good"}]}} if wildcard else
                  {"m": {**policy, "deployments": [{**up, "model": m, "id": m} for m in ("bad-up", "good-up")]}})
        name = "w/bad-up" if wildcard else "m"
        config.write_text(yaml.safe_dump({
            "auth": {"master_key": "${SB_MASTER}"},
            "storage": {"sqlite_path": str(tmp_path / "breakers.db")},
            "models": models,
        }))
        with _two_workers(config, port) as proc:
            attempts: list[str] = []

            def call() -> None:
                with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER, max_retries=0) as c:
                    raw = c.chat.completions.with_raw_response.create(
                        model=name, messages=[{"role": "user", "content": "hi"}])
                    assert raw.parse().choices[0].message.content == "good"
                    attempts.append(raw.headers["x-switchboard-attempts"])

            # One failure opens the breaker of the worker that saw it (the request fails over)...
            call()
            assert attempts == ["2"] and mock.stats()["by_model"]["bad-up"] == 1
            # ... and every worker now skips the broken deployment: no request pays for a failed attempt again.
            attempts.clear()
            for _ in range(3):
                assert _calls(10, call) == [200] * 10
            assert attempts == ["1"] * 30, attempts
            assert mock.stats()["by_model"]["bad-up"] == 1
            # Workers restarted after a crash find the breaker open, too.
            _kill_workers(proc, port)
            attempts.clear()
            for _ in range(3):
                assert _calls(10, call) == [200] * 10
            assert attempts == ["1"] * 30, attempts
            assert mock.stats()["by_model"]["bad-up"] == 1
    finally:
        mock.stop()
