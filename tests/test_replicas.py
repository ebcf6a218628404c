"""Two gateway processes sharing Postgres and Redis: caps hold in total, money reconciles to the cent.

Needs PostgreSQL on 127.0.0.1:5432 (database `test`, trust auth) and Redis on
127.0.0.1:6379; `.ci/run` starts them. Each run uses its own Postgres schema
and Redis key prefix and drops them afterwards.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import openai
import pytest
from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-replica-master-0123456789"
ADMIN = {"authorization": f"Bearer {MASTER}"}
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
REPLY = "abcdefghij abcdefghij abcdefghij abcdefg"  # 39 characters: 10 tokens to the mock
PRICE_IN, PRICE_OUT = 10_000.0, 20_000.0  # $/Mtok: one cent per prompt token, two per completion token


def require_services() -> None:
    import socket

    for name, port, how in (("PostgreSQL", 5432, "pg_ctlcluster 15 main start"),
                            ("Redis", 6379, "redis-server --daemonize yes")):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            pytest.fail(f"{name} is not reachable on 127.0.0.1:{port}; start it (`bash .ci/run` does, or `{how}`).")


async def pg_query(url: str, sql: str, *args):
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_services()
    tmp = tmp_path_factory.mktemp("replicas")
    schema = f"sbtest_{uuid.uuid4().hex[:10]}"
    prefix = f"sbtest:{uuid.uuid4().hex[:10]}:"
    mock = MockProc(tmp, {"m-up": {"reply": REPLY, "latency": 0.2},
                          "slow-up": {"reply": REPLY, "tokens_per_second": 8}})
    base = mock.url + "/v1"
    pricing = {"input_per_mtok": PRICE_IN, "output_per_mtok": PRICE_OUT}
    config = {
        "auth": {"master_key": "${SB_MASTER}"},
        "storage": {"database_url": "${SB_DB}", "redis_url": "${SB_REDIS}", "log_flush_seconds": 0.05},
        "accounts": {"redis_prefix": prefix, "key_cache_seconds": 0.5},
        "server": {"drain_seconds": 20},
        "models": {
            "m": {"deployments": [{"provider": "openai", "model": "m-up", "base_url": base}], "pricing": pricing},
            "slow": {"deployments": [{"provider": "openai", "model": "slow-up", "base_url": base}], "pricing": pricing},
        },
    }
    env = {"SB_MASTER": MASTER, "SB_DB": f"{PG_URL}?search_path={schema}", "SB_REDIS": REDIS_URL}
    gateways = [GatewayProc(tmp, config, env=env, name=f"gw{i}") for i in range(2)]
    yield {"gws": gateways, "mock": mock, "schema": schema, "db": env["SB_DB"], "tmp": tmp, "config": config, "env": env}
    for gw in gateways:
        gw.stop()
    mock.stop()
    asyncio.run(pg_query(PG_URL, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + "*"))
    if keys:
        r.delete(*keys)


def create_key(gw: GatewayProc, **fields) -> tuple[str, str]:
    status, _, body = http("POST", gw.url + "/admin/keys", fields, ADMIN)
    assert status == 201, body
    data = json.loads(body)
    return data["id"], data["key"]


def clients(cluster, key: str) -> list[openai.AsyncOpenAI]:
    return [openai.AsyncOpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=30) for gw in cluster["gws"]]


async def one_request(client: openai.AsyncOpenAI, model: str = "m") -> tuple[int, dict[str, str]]:
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        return 200, dict(raw.headers)
    except openai.APIStatusError as exc:
        return exc.status_code, dict(exc.response.headers)


def test_migrations_ran_once_although_both_replicas_started_together(cluster):
    rows = asyncio.run(pg_query(cluster["db"].split("?")[0], f'SELECT version FROM "{cluster["schema"]}".schema_migrations'))
    from switchboard.storage.schema import migrations

    assert sorted(r["version"] for r in rows) == list(range(1, len(migrations("postgres")) + 1))


def test_credit_is_never_overdrawn_and_reconciles_to_the_cent(cluster):
    gw0, gw1 = cluster["gws"]
    mock = cluster["mock"]
    credit = 21.0  # ~100 requests at $0.21 each
    key_id, key = create_key(gw0, name="burst", credits_usd=credit)
    mock.reset()

    async def burst(n: int) -> list[tuple[int, dict[str, str]]]:
        cs = clients(cluster, key)
        try:
            return await asyncio.gather(*(one_request(cs[i % 2]) for i in range(n)))
        finally:
            for c in cs:
                await c.close()

    t0 = time.monotonic()
    results = asyncio.run(burst(500))
    for _ in range(20):  # smaller waves use up what the first wave's worst-case holds kept free
        wave = asyncio.run(burst(8))
        results += wave
        if all(s == 402 for s, _ in wave):
            break
    elapsed = time.monotonic() - t0
    statuses = [s for s, _ in results]
    ok = statuses.count(200)
    assert set(statuses) <= {200, 402}, statuses
    assert ok >= 60, f"only {ok} admitted"
    status, _, body = http("GET", gw1.url + f"/admin/keys/{key_id}", headers=ADMIN)
    account = json.loads(body)["credit"]
    reservation = (2 + 8) * 0.01 + 10 * 0.02  # worst case held per request: 2 bytes + 8 prompt, 10 out
    assert account["reserved_usd"] == 0
    assert account["balance_usd"] >= -reservation, "overdrawn by more than one request's reservation"
    assert account["available_usd"] < reservation + 1e-9, "the credit was not used up: the test proved nothing"
    # ledger == request log == what the upstream billed, to the cent (exactly, in fact)
    ledger_rows = asyncio.run(pg_query(cluster["db"].split("?")[0],
                                       f'SELECT kind, amount, request_id FROM "{cluster["schema"]}".ledger WHERE account = $1',
                                       f"key:{key_id}"))
    charges = [r for r in ledger_rows if r["kind"] == "charge"]
    assert len(charges) == ok
    ledger_total = -sum(r["amount"] for r in charges) / 1e9
    time.sleep(0.3)  # the request log is batched
    logged = asyncio.run(pg_query(cluster["db"].split("?")[0],
                                  f'SELECT status, cost FROM "{cluster["schema"]}".request_log WHERE key_id = $1', key_id))
    assert sum(1 for r in logged if r["status"] == 200) == ok
    logged_total = sum(r["cost"] for r in logged)
    stats = mock.stats()
    assert stats["completed"] == ok
    billed = (stats["prompt_tokens"] * PRICE_IN + stats["completion_tokens"] * PRICE_OUT) / 1e6
    assert round(ledger_total, 2) == round(logged_total, 2) == round(billed, 2)
    assert abs(ledger_total - billed) < 1e-9
    assert abs(account["balance_usd"] - (credit - ledger_total)) < 1e-9
    print(f"\n{len(results)} requests (a burst of 500, then waves of 8) over 2 replicas in {elapsed:.2f}s: {ok} admitted, ${ledger_total:.2f} charged of ${credit:.2f}, "
          f"final balance ${account['balance_usd']:.4f}")


def test_clients_that_leave_at_once_leave_no_hold_slot_or_gap_in_the_log(cluster):
    """Clients that give up within 50 ms, streamed or not, on both replicas: every request settles (a log row,
    holds released or charged) and the key's parallel slots all come back."""
    import random

    gws = cluster["gws"]
    key_id, key = create_key(gws[0], name="leavers", credits_usd=10.0, max_parallel=4)
    rng = random.Random(3)
    sent = []

    async def leave(i: int, wait: float) -> None:
        stream = i % 2 == 0
        body = json.dumps({"model": "slow" if stream else "m", "stream": stream, "max_tokens": 10,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        port = int(gws[i % 2].url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer " + key.encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
            sent.extend(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                        if line.lower().startswith(b"x-request-id:"))
            await asyncio.wait_for(reader.read(), wait)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.transport.abort()

    async def rounds() -> None:
        for r in range(40):
            await asyncio.gather(*(leave(4 * r + i, rng.uniform(0.0, 0.05)) for i in range(4)))

    asyncio.run(rounds())
    schema = cluster["schema"]
    db = cluster["db"].split("?")[0]
    deadline = time.monotonic() + 10
    while asyncio.run(pg_query(db, f'SELECT 1 FROM "{schema}".reservations')) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not asyncio.run(pg_query(db, f'SELECT request_id FROM "{schema}".reservations'))
    status, _, body = http("GET", gws[1].url + f"/admin/keys/{key_id}", headers=ADMIN)
    assert json.loads(body)["credit"]["reserved_usd"] == 0
    def missing() -> set[str]:  # requests that got their head and have no row yet (the log is batched)
        logged = {r["request_id"] for r in asyncio.run(pg_query(
            db, f'SELECT request_id FROM "{schema}".request_log WHERE key_id = $1', key_id))}
        return set(sent) - logged

    wait_for(lambda: not missing(), timeout=10)
    assert sent and not missing(), missing()
    # all four parallel slots are free again, on either replica
    results = asyncio.run(_parallel_asks(cluster, key, 4))
    assert [s for s, _ in results] == [200] * 4


async def _parallel_asks(cluster, key: str, n: int) -> list[tuple[int, dict[str, str]]]:
    cs = clients(cluster, key)
    try:
        return await asyncio.gather(*(one_request(cs[i % 2], "slow") for i in range(n)))
    finally:
        for c in cs:
            await c.close()


def test_one_idempotency_key_runs_once_across_replicas_and_a_failure_frees_it_at_once(cluster):
    gw0, gw1 = cluster["gws"]
    mock = cluster["mock"]
    key_id, key = create_key(gw0, name="idem", credits_usd=5.0)
    mock.reset()

    async def same_request(n: int) -> list[tuple[int, dict[str, str]]]:
        cs = clients(cluster, key)

        async def one(c: openai.AsyncOpenAI) -> tuple[int, dict[str, str]]:
            try:
                raw = await c.chat.completions.with_raw_response.create(
                    model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                    extra_headers={"Idempotency-Key": "once-only"})
                return 200, dict(raw.headers)
            except openai.APIStatusError as exc:
                return exc.status_code, dict(exc.response.headers)
        try:
            return await asyncio.gather(*(one(cs[i % 2]) for i in range(n)))
        finally:
            for c in cs:
                await c.close()

    results = asyncio.run(same_request(20))  # the upstream takes 0.2 s: they all overlap
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 409} and statuses.count(200) >= 1, statuses
    assert sum(1 for s, h in results if s == 200 and h.get("idempotent-replayed") != "true") == 1
    assert mock.stats()["completed"] == 1
    charges = asyncio.run(pg_query(cluster["db"].split("?")[0],
                                   f'SELECT 1 FROM "{cluster["schema"]}".ledger WHERE account = $1 AND kind = $2',
                                   f"key:{key_id}", "charge"))
    assert len(charges) == 1
    # a request that failed (402 here) frees its key before its answer goes out: the retry runs, on either replica
    _, poor = create_key(gw0, name="poor", credits_usd=0.01)
    for i in range(10):
        status, _, body = http("POST", cluster["gws"][i % 2].url + "/v1/chat/completions",
                               {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
                               {"authorization": f"Bearer {poor}", "idempotency-key": "retried"})
        assert status == 402, body


def test_rpm_limit_holds_in_total_across_replicas(cluster):
    key_id, key = create_key(cluster["gws"][0], name="rpm", rpm=40)

    async def burst():
        cs = clients(cluster, key)
        try:
            return await asyncio.gather(*(one_request(cs[i % 2]) for i in range(200)))
        finally:
            for c in cs:
                await c.close()

    results = asyncio.run(burst())
    admitted = [h for s, h in results if s == 200]
    refused = [h for s, h in results if s == 429]
    assert len(admitted) == 40 and len(refused) == 160, str(sorted(s for s, _ in results))
    h = refused[0]
    assert int(h["retry-after"]) >= 1
    assert h["x-ratelimit-limit-requests"] == "40" and h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert {admitted[0]["x-ratelimit-limit-requests"]} == {"40"}


def test_revocation_on_one_replica_is_refused_by_the_other_within_a_second(cluster):
    gw0, gw1 = cluster["gws"]
    key_id, key = create_key(gw0, name="revoke-me")
    client = openai.OpenAI(api_key=key, base_url=gw1.url + "/v1", max_retries=0, timeout=10)
    client.chat.completions.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    status, _, _ = http("DELETE", gw0.url + f"/admin/keys/{key_id}", headers=ADMIN)
    assert status == 200
    revoked_at = time.monotonic()
    while True:
        status, _, body = http("GET", gw1.url + "/v1/models", headers={"authorization": f"Bearer {key}"})
        if status == 401:
            break
        assert time.monotonic() - revoked_at < 1.0, "still accepted a second after revocation"
        time.sleep(0.02)
    assert json.loads(body)["error"]["code"] == "key_revoked"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_sigkill_under_load_loses_no_charge_of_a_delivered_response(cluster):
    tmp, config, env = cluster["tmp"], cluster["config"], cluster["env"]
    victim = GatewayProc(tmp, config, env=env, name="victim")
    key_id, key = create_key(victim, name="kill", credits_usd=1000.0)
    delivered: list[str] = []

    async def load() -> None:
        client = openai.AsyncOpenAI(api_key=key, base_url=victim.url + "/v1", max_retries=0, timeout=10)

        async def worker() -> None:
            while True:
                try:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
                    raw.parse()
                    delivered.append(raw.headers["x-request-id"])
                except (openai.APIConnectionError, openai.APIStatusError):
                    return

        async def killer() -> None:  # mid-load: once plenty of responses are out and more are in flight
            deadline = time.monotonic() + 30
            while len(delivered) < 60 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            victim.proc.send_signal(signal.SIGKILL)

        await asyncio.gather(killer(), *(worker() for _ in range(40)))
        await client.close()

    asyncio.run(load())
    victim.stop()
    assert len(delivered) >= 60
    rows = asyncio.run(pg_query(cluster["db"].split("?")[0],
                                f'SELECT request_id FROM "{cluster["schema"]}".ledger WHERE account = $1 AND kind = $2',
                                f"key:{key_id}", "charge"))
    charged = {r["request_id"] for r in rows}
    missing = [rid for rid in delivered if rid not in charged]
    assert not missing, f"{len(missing)} delivered responses have no ledger entry"


def test_sigterm_drains_in_flight_streams_and_charges_them(cluster):
    tmp, config, env = cluster["tmp"], cluster["config"], cluster["env"]
    gw = GatewayProc(tmp, config, env=env, name="drain")
    key_id, key = create_key(gw, name="drain", credits_usd=100.0)
    client = openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=20)
    stream = client.chat.completions.with_raw_response.create(
        model="slow", stream=True, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    request_id = stream.headers["x-request-id"]
    chunks = stream.parse()
    first = next(iter(chunks))
    assert first.choices[0].delta.role == "assistant"
    gw.proc.send_signal(signal.SIGTERM)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY, "the stream was cut instead of drained"
    assert gw.proc.wait(20) == 0
    rows = asyncio.run(pg_query(cluster["db"].split("?")[0],
                                f'SELECT amount FROM "{cluster["schema"]}".ledger WHERE request_id = $1', request_id))
    assert [r["amount"] for r in rows] == [-(1 * 10_000_000 + 10 * 20_000_000)]
