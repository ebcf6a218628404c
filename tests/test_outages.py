"""The gateway's own services failing under it: Postgres unreachable, Redis restarted.

Postgres is reached through a TCP relay the test can cut (the shared server is
not touched); Redis is a private `redis-server` on a free port, restarted here.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest
from support import GatewayProc, MockProc, free_port, http, wait_for

from test_replicas import PG_URL, pg_query, require_services

MASTER = "sk-outage-master-0123456789"
ADMIN = {"authorization": f"Bearer {MASTER}"}
ASK = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


class Relay:
    """A TCP relay to 127.0.0.1:`target` that can be cut (every connection closed, new ones refused) and restored."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.restore()

    def _call(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(5)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def restore(self) -> None:
        async def start() -> None:
            self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self._call(start())

    def cut(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for writer in self.writers:
                writer.transport.abort()
            self.writers.clear()
        self._call(stop())


def _redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: _listening(port), timeout=10), "redis-server did not start"
    return proc


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_services()
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (`bash .ci/run` installs it)")
    tmp = tmp_path_factory.mktemp("outages")
    schema = f"sbtest_{uuid.uuid4().hex[:10]}"
    relay = Relay(5432)
    redis_port = free_port()
    redis = _redis(redis_port)
    mock = MockProc(tmp, {"m-up": {"reply": "fine"}, "slow-up": {"reply": "one two three four five six seven eight",
                                                                 "tokens_per_second": 8}})
    config = {"auth": {"master_key": "${SB_MASTER}"},
              "storage": {"database_url": "${SB_DB}", "redis_url": "${SB_REDIS}", "log_flush_seconds": 0.05},
              "accounts": {"key_cache_seconds": 0.2},
              "models": {"m": {"deployments": [{"provider": "openai", "model": "m-up", "base_url": mock.url + "/v1"}],
                               "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
                         "slow": {"deployments": [{"provider": "openai", "model": "slow-up",
                                                   "base_url": mock.url + "/v1"}],
                                  "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}}}
    env = {"SB_MASTER": MASTER, "SB_DB": f"postgresql://postgres@127.0.0.1:{relay.port}/test?search_path={schema}",
           "SB_REDIS": f"redis://127.0.0.1:{redis_port}/0"}
    gw = GatewayProc(tmp, config, env=env)
    state = {"gw": gw, "relay": relay, "redis": redis, "redis_port": redis_port}
    yield state
    gw.stop()
    mock.stop()
    state["redis"].terminate()
    asyncio.run(pg_query(PG_URL, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _key(gw, **fields) -> str:
    status, _, body = http("POST", gw.url + "/admin/keys", fields, ADMIN)
    assert status == 201, body
    return json.loads(body)["key"]


def test_postgres_out_of_reach_is_a_503_the_client_may_retry(stack):
    gw, relay = stack["gw"], stack["relay"]
    key = _key(gw, credits_usd=5.0)
    auth = {"authorization": f"Bearer {key}"}
    assert http("POST", gw.url + "/v1/chat/completions", ASK, auth)[0] == 200
    streamed: list[bytes] = []
    slow = {**ASK, "model": "slow", "stream": True, "max_tokens": 50}
    reader = threading.Thread(target=lambda: streamed.append(
        http("POST", gw.url + "/v1/chat/completions", slow, auth)[2]))
    reader.start()
    time.sleep(0.5)  # the stream is under way (its 8 words take 0.9 s), its hold taken
    relay.cut()
    try:
        reader.join(10)
        # its charge cannot be recorded: the stream ends in an error event, not in [DONE] (and is not charged)
        events = [line[6:] for line in streamed[0].decode().splitlines() if line.startswith("data: ")]
        assert events[-1] != "[DONE]" and json.loads(events[-1])["error"]["code"] == "accounting_unavailable", events
        time.sleep(0.3)  # past key_cache_seconds: the key must be looked up again
        for body in (ASK, {**ASK, "stream": True}):
            status, _, raw = http("POST", gw.url + "/v1/chat/completions", body, auth)
            error = json.loads(raw)["error"]
            assert status == 503 and error["code"] == "storage_unavailable", raw
            assert "retry" in error["message"]
    finally:
        relay.restore()
    assert wait_for(lambda: http("POST", gw.url + "/v1/chat/completions", ASK, auth)[0] == 200, timeout=10)


def test_a_redis_restart_costs_no_request_made_after_it(stack):
    gw = stack["gw"]
    key = _key(gw, rpm=1000, max_parallel=50)  # every request checks its limits in Redis
    auth = {"authorization": f"Bearer {key}"}

    async def burst(n: int) -> list[int]:
        return await asyncio.gather(*(asyncio.to_thread(
            lambda: http("POST", gw.url + "/v1/chat/completions", ASK, auth)[0]) for _ in range(n)))

    assert asyncio.run(burst(16)) == [200] * 16  # the gateway's pool now holds several connections
    subprocess.run(["redis-cli", "-p", str(stack["redis_port"]), "shutdown", "nosave"], check=False,
                   stdout=subprocess.DEVNULL)
    stack["redis"].wait(10)
    status, _, raw = http("POST", gw.url + "/v1/chat/completions", ASK, auth)
    assert status == 503 and json.loads(raw)["error"]["code"] == "limits_unavailable"
    stack["redis"] = _redis(stack["redis_port"])
    assert asyncio.run(burst(16)) == [200] * 16  # pooled connections Redis closed are retried on fresh ones
