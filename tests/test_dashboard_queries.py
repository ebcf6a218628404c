"""The dashboard's aggregations on both real backends (SQLite file, Postgres on 127.0.0.1): same numbers from the same SQL.

Rows are written through the storage's own request-log writer, then every
query is checked against the same numbers computed in Python from the rows.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from switchboard.api import dashboard_queries as q
from switchboard.storage.base import RequestLogEntry

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _entries(now: float) -> list[RequestLogEntry]:
    rng = random.Random(42)
    out = []
    for i in range(2000):
        routed = i % 4 == 0
        model = rng.choice(["small", "big"])
        status = 500 if i % 10 == 0 else 499 if i % 10 == 4 else 200  # a hang-up is charged, a failure not
        out.append(RequestLogEntry(
            request_id=f"req_{i}", ts=now - 3600 + (i * 3599 / 2000), key_id=("k1", "k2", "k3")[i % 3],
            model_requested="auto" if routed else model, model_used=model, deployment=f"{model}#0",
            status=status, prompt_tokens=10, completion_tokens=5,
            cost=0.0 if status == 500 else 0.001 if model == "small" else 0.01,
            latency_ms=rng.lognormvariate(5, 0.8), router="auto" if routed else None,
            attempts=2 if i % 7 == 0 else 1,
            extra={"cost_if_strong": 0.01, "attempts": [{"deployment": "big#1", "error": "server"},
                                                        {"deployment": f"{model}#0", "error": None}]} if routed else {}))
    return out


def _exact(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


async def _check(storage, now: float) -> None:
    await storage.start()
    try:
        entries = _entries(now)
        rows = [e.row() for e in entries]
        await storage.write_request_logs(rows[:7])  # batches that are not whole multi-row slices
        await storage.write_request_logs(rows[7:])
        since, until = now - 3600, now + 1
        ok = [e for e in entries if e.status < 400]

        series = await q.time_series(storage, since, until, 300.0)
        totals = series["totals"]
        assert totals["requests"] == len(entries) and totals["errors"] == len(entries) - len(ok)
        assert totals["spend"] == pytest.approx(sum(e.cost for e in entries))
        for name, p in (("p50_ms", 0.5), ("p95_ms", 0.95)):
            exact = _exact([e.latency_ms for e in ok], p)
            assert totals[name] == pytest.approx(exact, rel=0.06), (name, totals[name], exact)
        assert len(series["series"]) == 13  # 3601 s in 300 s buckets
        assert sum(b["requests"] for b in series["series"]) == len(entries)
        first = [e for e in entries if e.ts < since + 300]
        assert series["series"][0]["requests"] == len(first)

        # chart buckets on round times; the totals still exactly [since, until)
        mid = entries[1000].ts
        aligned = await q.time_series(storage, mid, until, 600.0, start=(mid // 600) * 600)
        assert aligned["totals"]["requests"] == sum(1 for e in entries if e.ts >= mid)
        assert aligned["series"][0]["t"] == (mid // 600) * 600 < mid
        assert sum(b["requests"] for b in aligned["series"]) == aligned["totals"]["requests"]

        keys = await q.top_keys(storage, since, until)
        assert {k["key_id"] for k in keys} == {"k1", "k2", "k3"}
        assert keys[0]["spend"] >= keys[1]["spend"] >= keys[2]["spend"]
        assert sum(k["requests"] for k in keys) == len(entries)

        models = {m["model"]: m for m in await q.top_models(storage, since, until)}
        assert models["big"]["requests"] == sum(1 for e in entries if e.model_used == "big")

        (split,) = await q.router_split(storage, since, until, {"auto": ("big", "small")})
        routed_ok = [e for e in entries if e.router == "auto" and (e.status < 400 or e.cost > 0)]
        assert any(e.status == 499 for e in routed_ok)
        assert split["requests"] == len(routed_ok)
        assert split["strong"] == sum(1 for e in routed_ok if e.model_used == "big")
        assert split["weak"] == sum(1 for e in routed_ok if e.model_used == "small")
        assert split["cost"] == pytest.approx(sum(e.cost for e in routed_ok))
        assert split["cost_if_strong"] == pytest.approx(0.01 * len(routed_ok))
        assert split["saving"] == pytest.approx(split["cost_if_strong"] - split["cost"])

        traffic = await q.deployment_traffic(storage, since, until)
        small = [e for e in entries if e.deployment == "small#0"]
        assert traffic["small#0"]["requests"] == len(small)
        assert traffic["small#0"]["errors"] == sum(1 for e in small if e.status >= 400)
        failed = await q.attempt_failures(storage, since, until)
        assert failed == {"big#1": sum(1 for e in entries if e.router and e.attempts > 1)}

        page = await q.request_page(storage, key_id="k1", model="big", status="error", since=None, until=None,
                                    before=None, limit=500)
        expected = [e for e in entries if e.key_id == "k1" and e.model_used == "big" and e.status >= 400]
        assert [r["request_id"] for r in page] == [e.request_id for e in sorted(expected, key=lambda e: -e.ts)]
        older = await q.request_page(storage, key_id=None, model=None, status=None, since=None, until=None,
                                     before=page[0]["ts"], limit=3)
        assert all(r["ts"] < page[0]["ts"] for r in older) and len(older) == 3

        usage = await q.key_usage(storage, now - 1800)
        assert usage["k2"]["requests"] == sum(1 for e in entries if e.key_id == "k2")
        assert usage["k2"]["spend_recent"] == pytest.approx(
            sum(e.cost for e in entries if e.key_id == "k2" and e.ts >= now - 1800))
        usage = await q.key_usage(storage, now - 1800, now - 900)
        assert usage["k2"]["spend_recent"] == pytest.approx(
            sum(e.cost for e in entries if e.key_id == "k2" and now - 1800 <= e.ts < now - 900))
    finally:
        await storage.close()


def test_queries_on_sqlite(tmp_path):
    from switchboard.storage.sqlite import SQLiteStorage

    asyncio.run(_check(SQLiteStorage(str(tmp_path / "q.db")), time.time()))


def test_queries_on_postgres():
    from switchboard.storage.postgres import PostgresStorage

    schema = f"dash_{uuid.uuid4().hex[:10]}"

    async def run() -> None:
        try:
            await _check(PostgresStorage(f"{PG_URL}?search_path={schema}"), time.time())
        finally:
            import asyncpg

            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

    asyncio.run(run())


def test_percentile_from_bins_interpolates_inside_a_bin():
    edges = q.bin_edges()
    assert q.percentile_from_bins({}, 0.5) is None
    # 100 values in one bin: the median lies halfway through it, geometrically.
    b = 50
    mid = q.percentile_from_bins({b: 100}, 0.5)
    assert edges[b - 1] < mid < edges[b]
    assert mid == pytest.approx((edges[b - 1] * edges[b]) ** 0.5, rel=1e-6)
