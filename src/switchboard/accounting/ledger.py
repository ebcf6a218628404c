"""Credits: an append-only ledger per account, and reservations against it.

An account is ``key:<id>`` or ``team:<name>``. The ledger holds every
movement (``topup``, ``charge``, ``refund``, ``adjustment``) in nano-dollars;
an account's balance is the sum of its ledger, and `accounts.balance` is that
sum kept up to date in the same transaction as each ledger row (so reading a
balance never scans the ledger).

A request on a prepaid account first *reserves* its worst-case cost: one
conditional UPDATE (``balance - reserved >= amount``) that is atomic in SQLite
and in Postgres alike, so however many replicas race, the sum of holds never
exceeds the balance. Settling deletes the reservation, releases the hold and
appends the actual charge, all in one transaction; a failed request only
releases. A reservation row remembers its holds, so the holds of a replica
that died mid-request are released by whichever replica sweeps them after
`reservation_ttl_seconds`. Deleting the row first makes release and settle
idempotent and safe against a concurrent sweep.

Budgets ride on the same mechanism: a hard budget is a hold on the
`spend` row of the current period (``spent + reserved + amount <= cap``).
Every charge is added to its account's day and month `spend` rows, budget or
not, so a budget set partway through a period (even while requests are in
flight) counts what was already spent in it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from switchboard.accounting.keys import PERIODS, Budget
from switchboard.accounting.pricing import MAX_NANOS
from switchboard.errors import InsufficientCredit
from switchboard.storage.base import Steps, Storage, execute, fetchone, without_nul

KINDS = ("topup", "charge", "refund", "adjustment")


class BudgetExceeded(InsufficientCredit):
    code = "budget_exceeded"


def bucket(period: str, ts: float) -> str:
    """The spend bucket a moment falls in: ``day:2025-06-01`` or ``month:2025-06`` (UTC)."""
    d = datetime.fromtimestamp(ts, UTC)
    return f"day:{d:%Y-%m-%d}" if period == "day" else f"month:{d:%Y-%m}"


def period_start(period: str, ts: float) -> float:
    """When the period containing `ts` began."""
    d = datetime.fromtimestamp(ts, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (d if period == "day" else d.replace(day=1)).timestamp()


def period_reset(period: str, ts: float) -> float:
    """When the period containing `ts` ends."""
    d = datetime.fromtimestamp(ts, UTC)
    if period == "day":
        start = d.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.timestamp() + 86400
    nxt = d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1, day=1, hour=0, minute=0, second=0,
                    microsecond=0)
    return nxt.timestamp()


@dataclass(slots=True)
class Holds:
    """What one request holds: amounts per prepaid account and per spend bucket."""

    accounts: dict[str, int] = field(default_factory=dict)
    buckets: dict[tuple[str, str], int] = field(default_factory=dict)

    def dumps(self) -> str:
        return orjson.dumps({"a": self.accounts, "b": [[a, b, n] for (a, b), n in self.buckets.items()]}).decode()

    @classmethod
    def loads(cls, text: str) -> Holds:
        data = orjson.loads(text)
        return cls(dict(data.get("a", {})), {(a, b): n for a, b, n in data.get("b", [])})

    def __bool__(self) -> bool:
        return bool(self.accounts or self.buckets)


def _usd(nanos: int) -> str:
    return f"${nanos / 1e9:,.4f}"


class Ledger:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # ------------------------------------------------------------ admin side

    async def post(self, account: str, kind: str, amount: int, *, note: str | None = None,
                   prepaid: bool | None = None, request_id: str | None = None) -> dict[str, Any]:
        """Append one movement (top-up, refund, adjustment) and return the new balance."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        now = time.time()

        def steps() -> Steps[dict[str, Any]]:
            yield from ensure_account(account, now)
            if prepaid is not None:
                yield execute("UPDATE accounts SET prepaid = ? WHERE account = ?", 1 if prepaid else 0, account)
            row = yield fetchone("SELECT balance FROM accounts WHERE account = ?", account)
            if abs(int(row["balance"] if row else 0) + amount) > MAX_NANOS:
                raise ValueError(f"the balance would leave the range of ${MAX_NANOS // 10**9:,} either way")
            yield execute("INSERT INTO ledger (ts, account, kind, amount, request_id, model, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          now, account, kind, amount, request_id, None, note)
            yield execute("UPDATE accounts SET balance = balance + ?, updated_at = ? WHERE account = ?", amount, now, account)
            return (yield fetchone("SELECT * FROM accounts WHERE account = ?", account)) or {}

        return await self.storage.transact(steps())

    async def set_prepaid(self, account: str, prepaid: bool) -> None:
        def steps() -> Steps[None]:
            yield from ensure_account(account, time.time())
            yield execute("UPDATE accounts SET prepaid = ? WHERE account = ?", 1 if prepaid else 0, account)

        await self.storage.transact(steps())

    async def account(self, account: str) -> dict[str, Any] | None:
        return await self.storage.fetchone("SELECT * FROM accounts WHERE account = ?", account)

    async def entries(self, account: str | None = None, *, limit: int = 100, before: int | None = None,
                      request_id: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if account:
            where.append("account = ?")
            args.append(account)
        if before:
            where.append("id < ?")
            args.append(int(before))
        if request_id:
            where.append("request_id = ?")
            args.append(request_id)
        sql = "SELECT * FROM ledger" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        return await self.storage.fetchall(sql, *args, int(limit))

    async def total(self, account: str, kind: str | None = None) -> int:
        sql, args = "SELECT COALESCE(SUM(amount), 0) AS total FROM ledger WHERE account = ?", [account]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        row = await self.storage.fetchone(sql, *args)
        return int(row["total"]) if row else 0

    async def set_budget(self, account: str, period: str, cap: int | None, *, soft: bool = False) -> None:
        now = time.time()

        def steps() -> Steps[None]:
            yield execute("DELETE FROM budgets WHERE account = ? AND period = ? AND soft = ?", account, period, int(soft))
            if cap is not None:
                yield execute("INSERT INTO budgets (account, period, cap, soft) VALUES (?, ?, ?, ?)",
                              account, period, int(cap), int(soft))
                yield from _seed_spend(account, period, now)

        await self.storage.transact(steps())

    async def budgets(self, account: str) -> list[dict[str, Any]]:
        now = time.time()
        rows = await self.storage.fetchall("SELECT * FROM budgets WHERE account = ? ORDER BY period, soft", account)
        out = []
        for r in rows:
            b = bucket(r["period"], now)
            spend = await self.storage.fetchone("SELECT spent, reserved FROM spend WHERE account = ? AND bucket = ?", account, b)
            out.append({"period": r["period"], "limit_usd": int(r["cap"]) / 1e9, "soft": bool(r["soft"]),
                        "spent_usd": int(spend["spent"]) / 1e9 if spend else 0.0,
                        "reserved_usd": int(spend["reserved"]) / 1e9 if spend else 0.0,
                        "resets_at": period_reset(r["period"], now)})
        return out

    # ------------------------------------------------------------ request side

    async def reserve(self, request_id: str, prepaid: list[str], budgets: list[Budget], amount: int,
                      ttl: float, now: float) -> tuple[Holds, list[str]]:
        """Hold `amount` on every prepaid account and hard budget, or raise and hold nothing.

        Returns the holds and the warnings of soft budgets already exceeded.
        """
        return await self.storage.transact(_reserve(request_id, prepaid, budgets, amount, ttl, now))

    async def settle(self, request_id: str, holds: Holds, charges: list[str], budgets: list[Budget], cost: int,
                     model: str | None, now: float, idempotency: tuple[str, str, int, bytes, str] | None = None) -> None:
        """Release the holds and append the actual charge, in one transaction."""
        model = without_nul(model)  # the client's text; Postgres refuses U+0000
        await self.storage.transact(_settle(request_id, holds, charges, budgets, cost, model, now, idempotency))

    async def release(self, request_id: str, holds: Holds) -> None:
        await self.storage.transact(_drop_holds(request_id, holds))

    async def sweep(self, now: float) -> int:
        """Release the holds of reservations whose request never settled (its replica died)."""
        rows = await self.storage.fetchall("SELECT request_id, holds FROM reservations WHERE expires_at < ? LIMIT 1000", now)
        for row in rows:
            await self.release(row["request_id"], Holds.loads(row["holds"]))
        return len(rows)


def _reserve(request_id: str, prepaid: list[str], budgets: list[Budget], amount: int, ttl: float,
             now: float) -> Steps[tuple[Holds, list[str]]]:
    holds = Holds()
    warnings: list[str] = []
    for account in sorted(prepaid):  # a fixed order, so concurrent transactions cannot deadlock
        n = yield execute("UPDATE accounts SET reserved = reserved + ? WHERE account = ? AND balance - reserved >= ?",
                          amount, account, amount)
        if n == 0:
            row = yield fetchone("SELECT balance, reserved FROM accounts WHERE account = ?", account)
            available = (int(row["balance"]) - int(row["reserved"])) if row else 0
            who = "This API key" if account.startswith("key:") else f"Team {account[5:]!r}"
            raise InsufficientCredit(
                f"{who} has insufficient credit: {_usd(max(0, available))} available, this request may cost up to "
                f"{_usd(amount)}. Add credit (switchboard credits add) or lower max_tokens.")
        holds.accounts[account] = amount
    for b in sorted(budgets, key=lambda b: (b.account, b.period, b.soft)):
        key = bucket(b.period, now)
        if b.soft:
            row = yield fetchone("SELECT spent FROM spend WHERE account = ? AND bucket = ?", b.account, key)
            if row and int(row["spent"]) >= b.cap:
                warnings.append(f"{b.account} is over its soft {b.period} budget of {_usd(b.cap)}")
            continue
        yield execute("INSERT INTO spend (account, bucket, spent, reserved) VALUES (?, ?, 0, 0) "
                      "ON CONFLICT (account, bucket) DO NOTHING", b.account, key)
        n = yield execute("UPDATE spend SET reserved = reserved + ? WHERE account = ? AND bucket = ? "
                          "AND spent + reserved + ? <= ?", amount, b.account, key, amount, b.cap)
        if n == 0:
            who = "This API key" if b.account.startswith("key:") else f"Team {b.account[5:]!r}"
            period = "daily" if b.period == "day" else "monthly"
            raise BudgetExceeded(f"{who} has reached its {period} budget of {_usd(b.cap)}; it resets at "
                                 f"{datetime.fromtimestamp(period_reset(b.period, now), UTC):%Y-%m-%d %H:%M} UTC.")
        holds.buckets[(b.account, key)] = amount
    if holds:
        yield execute("INSERT INTO reservations (request_id, created_at, expires_at, holds) VALUES (?, ?, ?, ?)",
                      request_id, now, now + ttl, holds.dumps())
    return holds, warnings


def _settle(request_id: str, holds: Holds, charges: list[str], budgets: list[Budget], cost: int, model: str | None,
            now: float, idempotency: tuple[str, str, int, bytes, str] | None) -> Steps[None]:
    dropped = bool(holds) and (yield execute("DELETE FROM reservations WHERE request_id = ?", request_id)) > 0
    # Rows are touched in one sorted order (accounts, then spend) in every transaction: no deadlocks.
    for account in sorted(set(charges) | set(holds.accounts)):
        release = holds.accounts.get(account, 0) if dropped else 0
        charge = cost if account in charges else 0
        if charge:
            yield from ensure_account(account, now)
            yield execute("INSERT INTO ledger (ts, account, kind, amount, request_id, model, note) "
                          "VALUES (?, ?, 'charge', ?, ?, ?, NULL)", now, account, -charge, request_id, model)
        if release or charge:
            yield execute("UPDATE accounts SET reserved = reserved - ?, balance = balance - ?, updated_at = ? "
                          "WHERE account = ?", release, charge, now, account)
    # Every charged account's day and month, not only those with a budget now: one may be set at any moment.
    charged = {b.account for b in budgets} | set(charges)
    spend_rows = {(a, bucket(p, now)) for a in charged for p in PERIODS} if cost else set()
    for account, key in sorted(spend_rows | set(holds.buckets)):
        release = holds.buckets.get((account, key), 0) if dropped else 0
        charge = cost if (account, key) in spend_rows else 0
        if release or charge:
            yield execute("INSERT INTO spend (account, bucket, spent, reserved) VALUES (?, ?, ?, 0) "
                          "ON CONFLICT (account, bucket) DO UPDATE SET spent = spend.spent + ?, "
                          "reserved = spend.reserved - ?", account, key, charge, charge, release)
    if idempotency is not None:
        key_id, idem_key, status, body, headers = idempotency
        yield execute("UPDATE idempotency SET state = 'done', status = ?, body = ?, headers = ? "
                      "WHERE key_id = ? AND idem_key = ?", status, body, headers, key_id, idem_key)


def _seed_spend(account: str, period: str, now: float) -> Steps[None]:
    """A period's spend row, if there is none yet, from the ledger: charges made before spend rows were kept."""
    yield execute("INSERT INTO spend (account, bucket, spent, reserved) "
                  "SELECT ?, ?, COALESCE(-SUM(amount), 0), 0 FROM ledger "
                  "WHERE account = ? AND kind = 'charge' AND ts >= ? AND ts < ? "
                  "ON CONFLICT (account, bucket) DO NOTHING",
                  account, bucket(period, now), account, period_start(period, now), period_reset(period, now))


def ensure_account(account: str, now: float) -> Steps[None]:
    yield execute("INSERT INTO accounts (account, prepaid, balance, reserved, updated_at) VALUES (?, 0, 0, 0, ?) "
                  "ON CONFLICT (account) DO NOTHING", account, now)


def _drop_holds(request_id: str, holds: Holds) -> Steps[None]:
    # Deleting the row first: only the transaction that actually removed it gives the holds back.
    if (yield execute("DELETE FROM reservations WHERE request_id = ?", request_id)) == 0:
        return
    for account, amount in sorted(holds.accounts.items()):
        yield execute("UPDATE accounts SET reserved = reserved - ? WHERE account = ?", amount, account)
    for (account, key), amount in sorted(holds.buckets.items()):
        yield execute("UPDATE spend SET reserved = reserved - ? WHERE account = ? AND bucket = ?", amount, account, key)
