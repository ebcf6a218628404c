"""The stores themselves, against real SQLite, Postgres and Redis: migrations, atomic holds, sweeps, windows."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from test_replicas import PG_URL, REDIS_URL, pg_query, require_services

from switchboard.accounting.keys import Budget
from switchboard.accounting.ledger import Holds, Ledger
from switchboard.accounting.limits import Check, MemoryLimits, RedisLimits
from switchboard.errors import InsufficientCredit
from switchboard.storage.base import REQUEST_LOG_COLUMNS, RequestLogEntry
from switchboard.storage.postgres import PostgresStorage
from switchboard.storage.redis_state import RedisState
from switchboard.storage.responses import BrokenChain, FailedResponse, ResponseStore
from switchboard.storage.schema import migrations
from switchboard.storage.sqlite import SQLiteStorage


@pytest.fixture
async def pg_schema():
    require_services()
    schema = f"sbtest_{uuid.uuid4().hex[:10]}"
    yield f"{PG_URL}?search_path={schema}"
    await pg_query(PG_URL, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
async def storage(request, tmp_path):
    if request.param == "sqlite":
        store = SQLiteStorage(str(tmp_path / "s.db"))
        await store.start()
        yield store
        await store.close()
    else:
        require_services()
        schema = f"sbtest_{uuid.uuid4().hex[:10]}"
        store = PostgresStorage(f"{PG_URL}?search_path={schema}")
        await store.start()
        yield store
        await store.close()
        await pg_query(PG_URL, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_concurrent_replica_starts_migrate_once(pg_schema):
    stores = [PostgresStorage(pg_schema) for _ in range(5)]
    await asyncio.gather(*(s.start() for s in stores))
    rows = await stores[0].fetchall("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == list(range(1, len(migrations("postgres")) + 1))
    assert await stores[3].ping()
    for s in stores:
        await s.close()


async def test_concurrent_reservations_never_exceed_the_balance(storage):
    ledger = Ledger(storage)
    await ledger.post("key:a", "topup", 10_000, prepaid=True)

    async def try_reserve(i: int) -> bool:
        try:
            await ledger.reserve(f"r{i}", ["key:a"], [], 1_000, 60, time.time())
            return True
        except InsufficientCredit:
            return False

    results = await asyncio.gather(*(try_reserve(i) for i in range(40)))
    assert sum(results) == 10
    row = await ledger.account("key:a")
    assert row["reserved"] == 10_000 and row["balance"] == 10_000
    winners = [i for i, ok in enumerate(results) if ok]
    await asyncio.gather(*(ledger.settle(f"r{i}", Holds({"key:a": 1_000}), ["key:a"], [], 700, "m", time.time())
                           for i in winners))
    row = await ledger.account("key:a")
    assert row["reserved"] == 0 and row["balance"] == 10_000 - 7_000
    assert await ledger.total("key:a") == row["balance"]


async def test_sweep_releases_dead_holds_once_and_late_settle_still_charges(storage):
    ledger = Ledger(storage)
    await ledger.post("key:b", "topup", 5_000, prepaid=True)
    holds, _ = await ledger.reserve("dead", ["key:b"], [Budget("key:b", "day", 10_000)], 3_000, 1, time.time())
    assert await ledger.sweep(time.time() + 5) == 1
    assert await ledger.sweep(time.time() + 5) == 0
    row = await ledger.account("key:b")
    assert row["reserved"] == 0
    await ledger.settle("dead", holds, ["key:b"], [Budget("key:b", "day", 10_000)], 2_000, "m", time.time())
    row = await ledger.account("key:b")
    assert row["reserved"] == 0 and row["balance"] == 3_000
    spend = await storage.fetchall("SELECT spent, reserved FROM spend WHERE account = ?", "key:b")
    assert [(r["spent"], r["reserved"]) for r in spend] == [(2_000, 0)] * 2  # its day and its month


async def test_a_charge_is_written_once_per_request(storage):
    ledger = Ledger(storage)
    await ledger.settle("once", Holds(), ["key:c"], [], 500, "m", time.time())
    import sqlite3

    import asyncpg

    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await ledger.settle("once", Holds(), ["key:c"], [], 500, "m", time.time())
    assert await ledger.total("key:c") == -500


@pytest.fixture(params=["memory", "redis"])
async def limits(request):
    if request.param == "memory":
        yield MemoryLimits()
        return
    require_services()
    state = RedisState(REDIS_URL, prefix=f"sbtest:{uuid.uuid4().hex[:10]}:")
    await state.start()
    yield RedisLimits(state)
    keys = [k async for k in state.client.scan_iter(match=state.prefix + "*")]
    if keys:
        await state.client.delete(*keys)
    await state.close()


async def test_sliding_window_admits_exactly_the_limit_under_concurrency(limits):
    verdicts = await asyncio.gather(*(limits.hit([Check("k:rpm", 25, 1), Check("k:tpm", 1000, 30)]) for _ in range(60)))
    admitted = [v for v in verdicts if v.admitted]
    assert len(admitted) == 25
    refused = [v for v in verdicts if not v.admitted]
    assert all(v.failed.scope == "k:rpm" and 1 <= v.retry_after <= 60 for v in refused)
    tokens = await limits.hit([Check("k:tpm", 1000, 300)])
    assert not tokens.admitted and tokens.failed.scope == "k:tpm" and tokens.used[0] == 750
    await limits.adjust("k:tpm", admitted[0].second, -500)
    assert (await limits.hit([Check("k:tpm", 1000, 300)])).admitted


async def test_parallel_slots(limits):
    assert await limits.acquire("p", 2, "a", 30)
    assert await limits.acquire("p", 2, "b", 30)
    assert not await limits.acquire("p", 2, "c", 30)
    await limits.release("p", "a")
    assert await limits.acquire("p", 2, "c", 30)
    assert await limits.acquire("q", 1, "x", 0.05)
    await asyncio.sleep(0.1)
    assert await limits.acquire("q", 1, "y", 30), "an expired slot (a crashed replica's) frees itself"


async def test_sqlite_group_commit_rolls_back_only_the_transaction_that_raises(tmp_path):
    """Transactions queued together share one COMMIT, but each one that raises is undone alone."""
    from switchboard.storage.base import Steps, execute, fetchone

    store = SQLiteStorage(str(tmp_path / "g.db"))
    await store.start()
    ledger = Ledger(store)

    def topup(i: int) -> Steps[int]:
        yield execute("INSERT INTO ledger (ts, account, kind, amount, request_id, model, note) "
                      "VALUES (?, 'key:g', 'topup', ?, ?, NULL, NULL)", time.time(), i, f"g{i}")
        if i % 5 == 0:
            raise ValueError(f"refused {i}")
        row = yield fetchone("SELECT COUNT(*) AS n FROM ledger WHERE request_id = ?", f"g{i}")
        return row["n"]

    outcomes = await asyncio.gather(*(store.transact(topup(i)) for i in range(1, 101)), return_exceptions=True)
    assert [str(o) for o in outcomes if isinstance(o, Exception)] == [f"refused {i}" for i in range(5, 101, 5)]
    assert all(o == 1 for o in outcomes if not isinstance(o, Exception))
    rows = await store.fetchall("SELECT amount FROM ledger WHERE account = 'key:g' ORDER BY amount")
    assert [r["amount"] for r in rows] == [i for i in range(1, 101) if i % 5]
    assert await ledger.total("key:g") == sum(i for i in range(1, 101) if i % 5)
    await store.close()


async def test_sqlite_checkpoints_keep_the_wal_bounded(tmp_path):
    """Automatic checkpoints are off on the write path; the background checkpointer keeps the WAL from growing."""
    path = tmp_path / "w.db"
    store = SQLiteStorage(str(path))
    await store.start()
    assert (await store.fetchone("PRAGMA wal_autocheckpoint"))["wal_autocheckpoint"] == 0
    ledger = Ledger(store)
    await ledger.post("key:w", "topup", 10**12, prepaid=True)

    batches = iter(range(10**9))

    async def write_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            i = next(batches)
            await asyncio.gather(*(ledger.settle(f"w{i}-{j}", Holds(), ["key:w"], [], 1, "m", time.time())
                                   for j in range(20)))
            await asyncio.sleep(0.005)

    await write_for(1.3)
    first = (tmp_path / "w.db-wal").stat().st_size
    await write_for(2.6)  # twice as long again: without checkpoints the WAL would triple
    second = (tmp_path / "w.db-wal").stat().st_size
    assert second < 2 * first, (first, second)
    await store.close()


async def test_stored_responses_chain_by_key_and_expire(storage):
    responses = ResponseStore(storage, ttl_seconds=3600)

    def turn(n: int) -> list[dict]:
        return [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]

    await responses.save({"id": "resp_1", "output": []}, "key-a", None, turn(1))
    await responses.save({"id": "resp_2", "output": []}, "key-a", "resp_1", turn(2))
    await responses.save({"id": "resp_3", "output": []}, "key-a", "resp_2", turn(3))
    await responses.save({"id": "resp_3", "output": ["again"]}, "key-a", "resp_2", turn(9))  # a replayed id: kept once
    assert await responses.history("resp_3", "key-a") == turn(1) + turn(2) + turn(3)
    assert await responses.history("resp_1", "key-a") == turn(1)
    assert await responses.get("resp_3", "key-a") == {"id": "resp_3", "output": []}
    # Another key sees none of it.
    assert await responses.history("resp_3", "key-b") is None and await responses.get("resp_1", "key-b") is None
    assert not await responses.delete("resp_1", "key-b")
    # A deleted link breaks the chain after it, and says so rather than answering with half a conversation.
    assert await responses.delete("resp_2", "key-a")
    with pytest.raises(BrokenChain):
        await responses.history("resp_3", "key-a")
    assert await responses.history("resp_1", "key-a") == turn(1)
    # Past the TTL a Response is gone for reading, and the next save sweeps it away.
    expired = ResponseStore(storage, ttl_seconds=0.5)
    await asyncio.sleep(0.6)
    assert await expired.history("resp_1", "key-a") is None and await expired.get("resp_1", "key-a") is None
    await expired.save({"id": "resp_4", "output": []}, "key-a", None, turn(4))
    rows = await storage.fetchall("SELECT response_id FROM responses")
    assert [r["response_id"] for r in rows] == ["resp_4"]


async def test_a_failed_response_is_kept_but_cannot_be_continued(storage):
    responses = ResponseStore(storage, ttl_seconds=3600)
    question, partial = {"role": "user", "content": "q"}, {"role": "assistant", "content": "half an ans"}
    await responses.save({"id": "resp_ok", "status": "completed", "output": []}, "key-a", None, [question, partial])
    await responses.save({"id": "resp_cut", "status": "failed", "output": []}, "key-a", "resp_ok", [question, partial])
    await responses.save({"id": "resp_short", "status": "incomplete", "output": []}, "key-a", None, [question])
    assert (await responses.get("resp_cut", "key-a"))["status"] == "failed"
    with pytest.raises(FailedResponse):
        await responses.history("resp_cut", "key-a")
    assert [rid for rid, _ in await responses.turns("resp_cut", "key-a")] == ["resp_ok", "resp_cut"]  # input items
    assert await responses.history("resp_short", "key-a") == [question]  # an incomplete one continues
    assert await responses.history("resp_cut", "key-b") is None


async def test_a_nul_in_a_request_log_row_never_blocks_the_rows_after_it(storage):
    now = time.time()
    entries = [RequestLogEntry(request_id=f"r{i}", ts=now + i, model_requested="m") for i in range(3)]
    entries[1].model_requested = "bad\x00model"
    entries[1].error_message = "no model bad\x00model"
    entries[1].extra = {"model": "bad\x00", "k\x00": ["\x00"], "path": "C:\\u0000"}
    await storage.write_request_logs([e.row() for e in entries])
    rows = {r["request_id"]: r for r in await storage.fetchall("SELECT * FROM request_log")}
    assert sorted(rows) == ["r0", "r1", "r2"]
    assert rows["r1"]["model_requested"] == "bad\ufffdmodel"
    assert rows["r1"]["error_message"] == "no model bad\ufffdmodel"
    assert orjson.loads(rows["r1"]["extra"]) == {"model": "bad\ufffd", "k\ufffd": ["\ufffd"], "path": "C:\\u0000"}
    if storage.dialect == "postgres":  # jsonb, which refuses \u0000, reads the column
        row = await storage.fetchone("SELECT CAST(extra AS jsonb)->>'model' AS m FROM request_log "
                                     "WHERE request_id = 'r1'")
        assert row == {"m": "bad\ufffd"}
    # A row the database refuses (built by hand, past the cleaning) costs that row only, not the batch after it.
    bad = RequestLogEntry(request_id="raw", ts=now, model_requested="x").row()
    bad = (*bad[:5], "a\x00b", *bad[6:])
    tokens = REQUEST_LOG_COLUMNS.index("prompt_tokens")
    huge = RequestLogEntry(request_id="huge", ts=now, model_requested="x").row()
    huge = (*huge[:tokens], 10 ** 20, *huge[tokens + 1:])  # past any integer column, on both databases
    after = RequestLogEntry(request_id="after", ts=now, model_requested="m").row()
    await storage.write_request_logs([bad, huge, after])
    ids = {r["request_id"] for r in await storage.fetchall("SELECT request_id FROM request_log")}
    assert "after" in ids and "huge" not in ids and ("raw" in ids) == (storage.dialect == "sqlite")


async def test_a_budget_set_partway_through_a_period_counts_what_was_spent_in_it(storage):
    ledger = Ledger(storage)
    now = time.time()
    # spent with no budget: the day and month rows are kept all the same, for the key and its team
    await ledger.settle("r1", Holds(), ["key:d", "team:t"], [], 300, "m", now)
    # a charge from before spend rows were kept for every account: only the ledger has it
    await ledger.post("key:e", "charge", -400)
    for account in ("key:d", "team:t", "key:e"):
        await ledger.set_budget(account, "day", 1_000)
        await ledger.set_budget(account, "month", 1_000, soft=True)
    spent = {a: [b["spent_usd"] for b in await ledger.budgets(a)] for a in ("key:d", "team:t", "key:e")}
    assert spent == {"key:d": [300e-9, 300e-9], "team:t": [300e-9, 300e-9], "key:e": [400e-9, 400e-9]}
    with pytest.raises(InsufficientCredit):  # 300 spent + 701 > 1,000
        await ledger.reserve("r2", [], [Budget("key:d", "day", 1_000)], 701, 60, now)


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_the_request_log_team_migration_gives_older_rows_their_keys_team(dialect, tmp_path):
    before = migrations(dialect)[:4]  # a database from before request_log had a team
    setup = ["CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)",
             *(s for statements in before for s in statements),
             *(f"INSERT INTO schema_migrations (version) VALUES ({v})" for v in range(1, len(before) + 1)),
             "INSERT INTO api_keys (key_id, name, prefix, salt, hash, team, created_at, updated_at) "
             "VALUES ('k1', 'a', 'p', 's', 'h', 'web', 0, 0), ('k2', 'b', 'p', 's', 'h', NULL, 0, 0)",
             "INSERT INTO request_log (request_id, ts, key_id) "
             "VALUES ('r1', 1, 'k1'), ('r2', 2, 'k2'), ('r3', 3, 'gone')"]
    if dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(tmp_path / "old.db")
        for sql in setup:
            conn.execute(sql)
        conn.commit()
        conn.close()
        store = SQLiteStorage(str(tmp_path / "old.db"))
    else:
        require_services()
        schema = f"sbtest_{uuid.uuid4().hex[:10]}"
        await pg_query(PG_URL, f'CREATE SCHEMA "{schema}"')
        for sql in setup:
            await pg_query(f"{PG_URL}?options=-csearch_path%3D{schema}", sql)
        store = PostgresStorage(f"{PG_URL}?search_path={schema}")
    try:
        await store.start()
        rows = await store.fetchall("SELECT request_id, team FROM request_log ORDER BY request_id")
        assert [(r["request_id"], r["team"]) for r in rows] == [("r1", "web"), ("r2", None), ("r3", None)]
        await store.write_request_logs([RequestLogEntry(request_id="r4", ts=4, key_id="k1", team="ops").row()])
        assert (await store.fetchone("SELECT team FROM request_log WHERE request_id = 'r4'")) == {"team": "ops"}
    finally:
        await store.close()
        if dialect == "postgres":
            await pg_query(PG_URL, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
