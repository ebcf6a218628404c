"""What the gateway needs from its database, whichever one it is.

Two backends implement it: SQLite (the embedded default, one file, no server)
and Postgres (shared by many replicas). Everything here is async; the SQLite
backend runs its blocking calls on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

REQUEST_LOG_COLUMNS = (
    "request_id", "ts", "key_id", "ingress", "endpoint", "model_requested", "model_used", "deployment",
    "provider", "status", "error_type", "error_message", "prompt_tokens", "completion_tokens", "cost",
    "latency_ms", "ttft_ms", "stream", "attempts", "router", "router_score", "extra", "team",
)


@dataclass(slots=True)
class RequestLogEntry:
    request_id: str
    ts: float
    key_id: str | None = None
    ingress: str = "openai"
    endpoint: str = "chat"
    model_requested: str | None = None
    model_used: str | None = None
    deployment: str | None = None
    provider: str | None = None
    status: int = 0
    error_type: str | None = None
    error_message: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    attempts: int = 0
    router: str | None = None
    router_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    team: str | None = None  # the key's team when the request was charged; reports group by it

    def row(self) -> tuple:
        """The row to insert: no text holds U+0000 (Postgres text and JSON refuse it), it becomes U+FFFD."""
        values = (self.request_id, self.ts, self.key_id, self.ingress, self.endpoint, self.model_requested,
                  self.model_used, self.deployment, self.provider, self.status, self.error_type, self.error_message,
                  self.prompt_tokens, self.completion_tokens, self.cost, self.latency_ms, self.ttft_ms,
                  1 if self.stream else 0, self.attempts, self.router, self.router_score,
                  _extra_text(self.extra) if self.extra else None, self.team)
        if "\x00" not in "".join([v for v in values if type(v) is str]):  # nearly always: one scan, no copy
            return values
        return tuple(without_nul(v) if type(v) is str else v for v in values)


def _extra_text(extra: dict[str, Any]) -> str:
    import orjson

    text = orjson.dumps(extra, default=str).decode()
    if "\\u0000" in text:  # rare: only then walk the data (a literal backslash-u0000 must stay as it is)
        text = orjson.dumps(without_nul(orjson.loads(text))).decode()
    return text


def without_nul(value: Any) -> Any:
    """`value` (text, or JSON-like data) with every U+0000 in its text replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


Statement = tuple[str, str, tuple[Any, ...]]
"""One statement of a transaction: (what to return, SQL with `?` placeholders, arguments)."""

Steps = Generator[Statement, Any, T]
"""A transaction written as a generator: it yields statements and receives each one's result.

Both backends drive the same generator, so the accounting logic is written once: SQLite
runs the whole transaction in one hop to its database thread (one round trip, however
many statements), Postgres awaits each statement on one pooled connection. Raising
inside the generator rolls the transaction back.
"""


def execute(sql: str, *args: Any) -> Statement:
    """A statement whose result is the number of rows it changed."""
    return ("rowcount", sql, args)


def fetchone(sql: str, *args: Any) -> Statement:
    """A query whose result is its first row as a dict, or None."""
    return ("one", sql, args)


def fetchall(sql: str, *args: Any) -> Statement:
    """A query whose result is every row as a dict."""
    return ("all", sql, args)


def single(statement: Statement) -> Steps[Any]:
    """A transaction of one statement; its result is the statement's."""
    return (yield statement)


class Storage(Protocol):
    name: str
    dialect: str  # "sqlite" or "postgres": the few SQL expressions that differ look at it

    async def transact(self, steps: Steps[T]) -> T:
        """Run a transaction: committed when the generator returns (its value is returned), rolled back if it raises."""

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def write_request_logs(self, rows: list[tuple]) -> None:
        """Insert request log rows (`RequestLogEntry.row()`, in `REQUEST_LOG_COLUMNS` order), never twice for one id."""
        ...

    async def recent_requests(self, limit: int = 50, **filters: Any) -> list[dict[str, Any]]: ...
