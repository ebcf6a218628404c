"""The shared store for many replicas: Postgres through an asyncpg connection pool.

Chosen when `storage.database_url` is set. The SQL of the accounting code is
written once with `?` placeholders; this backend rewrites them to `$n`.
Migrations run on start under a Postgres advisory lock, so replicas starting
at the same moment migrate once and the others wait, then find nothing to do.

A `search_path` query parameter in the URL (``...?search_path=team_a``) puts
every table in that schema, created if missing: one database can then hold
several independent gateways (or test runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from switchboard.errors import ServiceUnavailable
from switchboard.storage.base import REQUEST_LOG_COLUMNS, Statement, Steps
from switchboard.storage.schema import migrations

log = logging.getLogger("switchboard.storage")

_PLACEHOLDER = re.compile(r"\?")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MIGRATION_LOCK = 0x5B_0A_CC_01  # advisory lock id: "switchboard accounts migrations"

T = TypeVar("T")


def to_dollar_params(sql: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006 - deliberate memo
    out = _cache.get(sql)
    if out is None:
        counter = iter(range(1, 10_000))
        out = _cache[sql] = _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
    return out


def split_schema(url: str) -> tuple[str, str | None]:
    """The URL without a `search_path` parameter, and that schema (or None)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "search_path"), None)
    rest = [(k, v) for k, v in query if k != "search_path"]
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise ValueError(f"search_path {schema!r} is not a plain schema name")
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


async def _run(conn: Any, statement: Statement) -> Any:
    kind, sql, args = statement
    if kind == "rowcount":
        status = await conn.execute(to_dollar_params(sql), *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0
    if kind == "one":
        row = await conn.fetchrow(to_dollar_params(sql), *args)
        return dict(row) if row is not None else None
    return [dict(r) for r in await conn.fetch(to_dollar_params(sql), *args)]


def _row_errors() -> tuple[type[BaseException], ...]:
    """Errors about the data of a row, not about the database: the other rows can still be written."""
    import asyncpg

    return asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, UnicodeError


async def _insert_one_by_one(conn: Any, sql: str, rows: list[tuple]) -> None:
    """Write each row alone; a row the database refuses is logged and dropped, never retried forever."""
    for row in rows:
        try:
            await conn.execute(sql, *row)
        except _row_errors() as exc:
            log.error("dropped request log row %r: the database refused it: %s", row[0], exc)


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """Postgres being down or restarting is a 503 the client may retry, not a 500."""
    import asyncpg

    try:
        yield
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.exceptions.OperatorInterventionError) as exc:
        raise ServiceUnavailable("The gateway's database cannot be reached right now; retry shortly.",
                                 code="storage_unavailable") from exc


def _asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("storage.database_url needs asyncpg: pip install 'switchboard[postgres]'") from exc
    return asyncpg


class PostgresStorage:
    name = "postgres"
    dialect = "postgres"

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 20) -> None:
        self.url, self.schema = split_schema(url)
        self.min_size, self.max_size = min_size, max_size
        self._pool: Any = None

    async def start(self) -> None:
        asyncpg = _asyncpg()
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                if self.schema:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    await conn.execute(f'SET search_path TO "{self.schema}"')
                await self._migrate(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        finally:
            await conn.close()
        await self.connect()

    async def connect(self) -> None:
        """Open the pool on the database as it is, without migrating it (`start` migrates, then connects)."""
        settings = {"search_path": self.schema} if self.schema else None
        self._pool = await _asyncpg().create_pool(self.url, min_size=self.min_size, max_size=self.max_size,
                                                  server_settings=settings)

    @staticmethod
    async def _migrate(conn: Any) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
        done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, statements in enumerate(migrations("postgres"), start=1):
            if version in done:
                continue
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> bool:
        try:
            return await self._pool.fetchval("SELECT 1") == 1
        except Exception:
            return False

    async def transact(self, steps: Steps[T]) -> T:
        with _reachable():
            async with self._pool.acquire() as conn, conn.transaction():
                result: Any = None
                while True:
                    try:
                        statement = steps.send(result)
                    except StopIteration as done:
                        return done.value
                    result = await _run(conn, statement)

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with _reachable():
            return [dict(r) for r in await self._pool.fetch(to_dollar_params(sql), *args)]

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        with _reachable():
            row = await self._pool.fetchrow(to_dollar_params(sql), *args)
        return dict(row) if row is not None else None

    async def write_request_logs(self, rows: list[tuple]) -> None:
        cols = ", ".join(REQUEST_LOG_COLUMNS)
        params = ", ".join(f"${i}" for i in range(1, len(REQUEST_LOG_COLUMNS) + 1))
        sql = f"INSERT INTO request_log ({cols}) VALUES ({params}) ON CONFLICT (request_id) DO NOTHING"
        async with self._pool.acquire() as conn:
            try:
                await conn.executemany(sql, rows)  # atomic: one bad row and nothing is written
            except _row_errors() as exc:
                log.warning("a request log batch of %d rows was refused (%s); writing its rows one by one",
                            len(rows), exc)
                await _insert_one_by_one(conn, sql, rows)

    async def recent_requests(self, limit: int = 50, **filters: Any) -> list[dict[str, Any]]:
        where, args = [], []
        for col, key in (("key_id", "key_id"), ("status", "status")):
            if filters.get(key):
                args.append(filters[key])
                where.append(f"{col} = ${len(args)}")
        if filters.get("model"):
            args.append(filters["model"])
            where.append(f"(model_requested = ${len(args)} OR model_used = ${len(args)})")
        if filters.get("since"):
            args.append(float(filters["since"]))
            where.append(f"ts >= ${len(args)}")
        args.append(limit)
        sql = ("SELECT * FROM request_log" + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY ts DESC LIMIT ${len(args)}")
        return [dict(r) for r in await self._pool.fetch(sql, *args)]
