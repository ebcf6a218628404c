"""The database schema, as numbered migrations, for both backends.

Each migration is written once with two placeholders that differ between the
dialects: ``{serial}`` (an auto-increment primary key) and ``{real}`` (a
double). Money is never a float in the database: amounts are integers of
nano-dollars (1e-9 USD), so sums are exact and "to the cent" is a rounding of
an exact number. Migrations only ever add; a released one is never edited.
"""

from __future__ import annotations

_DIALECT = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "bigint": "INTEGER", "blob": "BLOB"},
    "postgres": {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION", "bigint": "BIGINT", "blob": "BYTEA"},
}

_MIGRATIONS: list[str] = [
    # 1: the request log (batched, for reporting)
    """
    CREATE TABLE IF NOT EXISTS request_log (
        request_id TEXT PRIMARY KEY,
        ts {real} NOT NULL,
        key_id TEXT,
        ingress TEXT,
        endpoint TEXT,
        model_requested TEXT,
        model_used TEXT,
        deployment TEXT,
        provider TEXT,
        status INTEGER,
        error_type TEXT,
        error_message TEXT,
        prompt_tokens INTEGER DEFAULT 0,
        completion_tokens INTEGER DEFAULT 0,
        cost {real} DEFAULT 0,
        latency_ms {real},
        ttft_ms {real},
        stream INTEGER DEFAULT 0,
        attempts INTEGER DEFAULT 0,
        router TEXT,
        router_score {real},
        extra TEXT
    );
    CREATE INDEX IF NOT EXISTS request_log_ts ON request_log (ts);
    CREATE INDEX IF NOT EXISTS request_log_key_ts ON request_log (key_id, ts)
    """,
    # 2: keys, credit accounts, the ledger, reservations, budgets, idempotency
    """
    CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        salt TEXT NOT NULL,
        hash TEXT NOT NULL,
        team TEXT,
        allowed_models TEXT,
        rpm INTEGER,
        tpm INTEGER,
        max_parallel INTEGER,
        model_limits TEXT,
        expires_at {real},
        metadata TEXT,
        created_at {real} NOT NULL,
        updated_at {real} NOT NULL,
        revoked_at {real}
    );
    CREATE INDEX IF NOT EXISTS api_keys_team ON api_keys (team);
    CREATE TABLE IF NOT EXISTS accounts (
        account TEXT PRIMARY KEY,
        prepaid INTEGER NOT NULL DEFAULT 0,
        balance {bigint} NOT NULL DEFAULT 0,
        reserved {bigint} NOT NULL DEFAULT 0,
        updated_at {real} NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ledger (
        id {serial},
        ts {real} NOT NULL,
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount {bigint} NOT NULL,
        request_id TEXT,
        model TEXT,
        note TEXT
    );
    CREATE INDEX IF NOT EXISTS ledger_account_ts ON ledger (account, ts);
    CREATE UNIQUE INDEX IF NOT EXISTS ledger_once ON ledger (account, request_id, kind);
    CREATE TABLE IF NOT EXISTS reservations (
        request_id TEXT PRIMARY KEY,
        created_at {real} NOT NULL,
        expires_at {real} NOT NULL,
        holds TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS reservations_expiry ON reservations (expires_at);
    CREATE TABLE IF NOT EXISTS budgets (
        account TEXT NOT NULL,
        period TEXT NOT NULL,
        cap {bigint} NOT NULL,
        soft INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, period, soft)
    );
    CREATE TABLE IF NOT EXISTS spend (
        account TEXT NOT NULL,
        bucket TEXT NOT NULL,
        spent {bigint} NOT NULL DEFAULT 0,
        reserved {bigint} NOT NULL DEFAULT 0,
        PRIMARY KEY (account, bucket)
    );
    CREATE TABLE IF NOT EXISTS idempotency (
        key_id TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        status INTEGER,
        body {blob},
        headers TEXT,
        created_at {real} NOT NULL,
        PRIMARY KEY (key_id, idem_key)
    )
    """,
    # 3: feedback on logged requests (router training data)
    """
    CREATE TABLE IF NOT EXISTS feedback (
        request_id TEXT PRIMARY KEY,
        ts {real} NOT NULL,
        key_id TEXT,
        score {real} NOT NULL,
        comment TEXT,
        prompt TEXT
    )
    """,
    # 4: stored Responses (the Responses API's store / previous_response_id), one turn each
    """
    CREATE TABLE IF NOT EXISTS responses (
        response_id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        parent_id TEXT,
        created_at {real} NOT NULL,
        turn {blob} NOT NULL,
        response {blob} NOT NULL
    );
    CREATE INDEX IF NOT EXISTS responses_created ON responses (created_at)
    """,
    # 5: the team a request was charged to, as it was then (a key may change teams later). Rows logged
    # before this migration take their key's team at the time of the migration: the best there is.
    """
    ALTER TABLE request_log ADD COLUMN team TEXT;
    UPDATE request_log SET team = (SELECT k.team FROM api_keys k WHERE k.key_id = request_log.key_id)
        WHERE key_id IN (SELECT key_id FROM api_keys WHERE team IS NOT NULL)
    """,
    # 6: a stored Response's status, so that a failed one is refused as a `previous_response_id` without reading
    # it whole. Rows stored before this migration are completed or incomplete ones (failed streams were not kept).
    """
    ALTER TABLE responses ADD COLUMN status TEXT
    """,
]


def migrations(dialect: str) -> list[list[str]]:
    """The migrations for one dialect, each as its list of statements."""
    subs = _DIALECT[dialect]
    return [[s.strip() for s in sql.format(**subs).split(";") if s.strip()] for sql in _MIGRATIONS]
