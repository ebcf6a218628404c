"""Shadow traffic: mirror a sampled share of live requests to candidate models, in the background.

Why: "would the mini model do for *our* traffic?" is best answered on that
traffic. The caller always gets the primary model's answer; after it is
complete, a sampled share of requests is sent again to each candidate, and the
two answers are stored as a pair for `switchboard shadow-report` (agreement,
judge preference, latency, cost; export as router training data).

Config (top-level section `shadow`):

    shadow:
      budget_usd: 5.0       # total shadow spend allowed, across restarts; mirroring stops when it is reached
      max_in_flight: 8      # mirrors running at once; a sampled request beyond that is dropped, never queued
      db: shadow.db         # SQLite file of the pairs (default: storage.sqlite_path), table shadow_pairs
      seed: 1               # optional: seed of the sampler (reproducible tests)
      models:
        gpt-4o:             # the model (or router) the app calls
          candidates: [gpt-4o-mini, auto]
          sample: 0.1       # share of its successful requests to mirror

Guarantees: a mirror starts only after the caller's answer is final (see
`switchboard.observers`), never holds the caller's connection, is not logged
or charged on the caller's key (its cost goes to the shadow budget and the
pairs table only), and failures are stored as pairs with an error, not raised.
Spend can overshoot the budget by at most the cost of the mirrors in flight
when it is reached.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.accounting.tokens import Usage, estimate_tokens, usage_of

if TYPE_CHECKING:
    from switchboard.app import Gateway
    from switchboard.context import RequestContext
    from switchboard.core.request import ChatRequest

log = logging.getLogger("switchboard.shadow")

PAIR_COLUMNS = (
    "ts", "request_id", "model", "served_by", "candidate", "candidate_served_by", "prompt", "messages",
    "primary_response", "candidate_response", "primary_ms", "primary_ttft_ms", "candidate_ms",
    "primary_cost", "candidate_cost", "primary_tokens", "candidate_tokens", "error",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS shadow_pairs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL, request_id TEXT, model TEXT NOT NULL, served_by TEXT, candidate TEXT NOT NULL,
    candidate_served_by TEXT, prompt TEXT NOT NULL, messages TEXT NOT NULL,
    primary_response TEXT, candidate_response TEXT,
    primary_ms REAL, primary_ttft_ms REAL, candidate_ms REAL,
    primary_cost REAL NOT NULL DEFAULT 0, candidate_cost REAL NOT NULL DEFAULT 0,
    primary_tokens INTEGER, candidate_tokens INTEGER, error TEXT
);
CREATE INDEX IF NOT EXISTS shadow_pairs_model ON shadow_pairs (model, candidate);
"""


@dataclass(slots=True)
class ShadowRule:
    model: str
    candidates: list[str]
    sample: float


@dataclass(slots=True)
class ShadowSettings:
    rules: dict[str, ShadowRule]
    db: str
    budget_usd: float | None = None
    max_in_flight: int = 8
    seed: int | None = None


def parse_shadow(gateway: Gateway) -> ShadowSettings:
    """Read the `shadow:` section, with line-numbered errors."""
    from switchboard.observers import section

    config = gateway.config
    sec = section(config, "shadow")
    known = set(config.models) | set(getattr(gateway, "routers", {}) or {})
    settings = ShadowSettings(
        rules={},
        db=sec.str("db", config.storage.sqlite_path) or config.storage.sqlite_path,
        budget_usd=sec.number("budget_usd", None, minimum=0),
        max_in_flight=sec.number("max_in_flight", 8, minimum=1, integer=True),
        seed=sec.number("seed", None, integer=True),
    )
    models = sec.section("models")
    if models is None:
        raise sec.error("models", "is required: the models whose traffic to mirror, each with its candidates")
    for name in models.value:
        rule = models.section(name)
        if rule is None:
            raise models.error(name, "must be a mapping with candidates (and sample)")
        if name not in known:
            raise models.error(name, f"{name!r} is not a configured model or router")
        candidates = rule.str_list("candidates")
        if not candidates:
            raise rule.error("candidates", "is required: a list of models to mirror requests to")
        for cand in candidates:
            if cand not in known:
                raise rule.error("candidates", f"{cand!r} is not a configured model or router")
            if cand == name:
                raise rule.error("candidates", f"{cand!r} is the model itself")
        settings.rules[name] = ShadowRule(name, candidates, rule.number("sample", 1.0, minimum=0, maximum=1))
        rule.done()
    models.done()
    sec.done()
    return settings


class ShadowStore:
    """The pairs table, on its own SQLite connection and its own thread (never the event loop's)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchboard-shadow")
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)  # as storage.sqlite_path does
            self._conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.executescript(SCHEMA)
        return self._conn

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> float:
        """Create the table; return the shadow spend recorded so far (the budget holds across restarts)."""
        def spent() -> float:
            row = self._open().execute("SELECT COALESCE(SUM(candidate_cost), 0) FROM shadow_pairs").fetchone()
            return float(row[0])

        return await self._run(spent)

    async def add(self, pair: dict[str, Any]) -> None:
        def insert() -> None:
            conn = self._open()
            values = [pair.get(c) if pair.get(c) is not None or not c.endswith("_cost") else 0.0  # a failed call
                      for c in PAIR_COLUMNS]                                                           # cost nothing
            conn.execute(f"INSERT INTO shadow_pairs ({', '.join(PAIR_COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(PAIR_COLUMNS))})", values)
            conn.commit()

        await self._run(insert)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(shut)
        self._pool.shutdown(wait=True)


def read_pairs(path: str, model: str | None = None, candidate: str | None = None) -> list[dict[str, Any]]:
    """All stored pairs (for the report), oldest first."""
    from urllib.parse import quote

    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)  # a "#" or "?" in the path stays in it
    conn.row_factory = sqlite3.Row
    try:
        sql, args = "SELECT * FROM shadow_pairs WHERE 1=1", []
        if model:
            sql, args = sql + " AND model = ?", args + [model]
        if candidate:
            sql, args = sql + " AND candidate = ?", args + [candidate]
        return [dict(r) for r in conn.execute(sql + " ORDER BY id", args)]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


@dataclass
class ShadowStats:
    sampled: int = 0
    mirrored: int = 0
    failed: int = 0
    dropped_busy: int = 0
    skipped_budget: int = 0
    spent_usd: float = 0.0
    in_flight: int = 0
    by_candidate: dict[str, int] = field(default_factory=dict)


class ShadowMirror:
    """The traffic observer that samples requests and mirrors them to candidates."""

    def __init__(self, gateway: Gateway, settings: ShadowSettings) -> None:
        self.gw = gateway
        self.settings = settings
        self.store = ShadowStore(settings.db)
        self.stats = ShadowStats()
        self._rng = random.Random(settings.seed)
        self._tasks: set[asyncio.Task] = set()
        self._warned_budget = False

    @classmethod
    def from_config(cls, gateway: Gateway) -> ShadowMirror:
        return cls(gateway, parse_shadow(gateway))

    async def start(self) -> None:
        self.stats.spent_usd = await self.store.start()

    def budget_left(self) -> bool:
        budget = self.settings.budget_usd
        return budget is None or self.stats.spent_usd < budget

    def observe(self, request: ChatRequest, ctx: RequestContext, text: str) -> None:
        rule = self.settings.rules.get(ctx.entry.model_requested or "")
        if rule is None or (ctx.identity is not None and ctx.identity.key_id == "shadow"):
            return
        if rule.sample < 1.0 and self._rng.random() >= rule.sample:
            return
        self.stats.sampled += 1
        if not self.budget_left():
            self.stats.skipped_budget += 1
            if not self._warned_budget:
                log.warning("shadow budget of $%.4f is spent: mirroring stopped", self.settings.budget_usd or 0)
                self._warned_budget = True
            return
        for candidate in rule.candidates:
            if self.stats.in_flight >= self.settings.max_in_flight:
                self.stats.dropped_busy += 1
                continue
            self.stats.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._mirror(request, ctx, text, candidate))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _mirror(self, request: ChatRequest, ctx: RequestContext, text: str, candidate: str) -> None:
        from switchboard.context import RequestContext as Ctx
        from switchboard.core.request import ChatRequest as Req
        from switchboard.errors import GatewayError
        from switchboard.pipeline import response_text

        entry = ctx.entry
        body = {k: v for k, v in request.body.items() if k not in ("stream", "stream_options")}
        body["model"] = candidate
        shadow_request = Req(body)
        sctx = Ctx("shadow", "chat")
        started = time.perf_counter()
        pair: dict[str, Any] = {
            "ts": time.time(), "request_id": entry.request_id, "model": entry.model_requested,
            "served_by": entry.model_used, "candidate": candidate, "prompt": shadow_request.prompt_text(),
            "messages": orjson.dumps(body["messages"]).decode(), "primary_response": text,
            "primary_ms": entry.latency_ms or ctx.elapsed_ms(), "primary_ttft_ms": entry.ttft_ms,
            "primary_cost": entry.cost, "primary_tokens": entry.completion_tokens,
        }
        try:
            model = self._resolve(shadow_request)
            response, served, dep = await self.gw.executor.run(model, sctx, lambda p, d: p.chat(shadow_request, d))
            answer = response_text(response)
            usage = usage_of(response) or Usage(estimate_tokens(shadow_request.prompt_text()), estimate_tokens(answer))
            cost = (dep.pricing or served.pricing).cost(*usage)
            pair.update(candidate_served_by=served.name, candidate_response=answer, candidate_cost=cost,
                        candidate_tokens=usage[1])
            self.stats.spent_usd += cost
            self.stats.mirrored += 1
        except GatewayError as exc:
            pair["error"] = f"{exc.code or exc.type}: {exc.message}"[:500]
            self.stats.failed += 1
        except asyncio.CancelledError:
            self.stats.in_flight -= 1
            raise
        except Exception as exc:  # a bug must not kill the gateway's loop; it is stored and logged
            log.exception("shadow mirror to %s failed", candidate)
            pair["error"] = f"internal: {exc}"[:500]
            self.stats.failed += 1
        pair["candidate_ms"] = (time.perf_counter() - started) * 1000.0
        self.stats.in_flight -= 1
        self.stats.by_candidate[candidate] = self.stats.by_candidate.get(candidate, 0) + 1
        try:
            await self.store.add(pair)
        except Exception:
            log.exception("storing a shadow pair failed")

    def _resolve(self, request: ChatRequest):
        routers = getattr(self.gw, "routers", None) or {}
        router = routers.get(request.model)
        if router is not None:
            decision = router.decide(request, {})
            return self.gw.config.models[decision.model]
        return self.gw.pipeline.resolve(request.model, None)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Let mirrors in flight finish (briefly), then stop; pairs already answered are stored."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        await self.store.close()
