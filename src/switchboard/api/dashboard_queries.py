"""The dashboard's questions to the request log, as SQL that runs on SQLite and Postgres alike.

Everything is aggregated in the database: a month of traffic is millions of
rows and the dashboard polls, so no query here returns more rows than a chart
has points. Latency percentiles are the one thing SQL cannot do portably;
they come from a log-scale histogram counted in SQL (bins 10% wide, value
interpolated inside its bin), which is within a few percent of the exact
percentile - the same trade Prometheus histograms make.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from switchboard.storage.base import Storage

_BIN_RATIO = 1.1
_BIN_FIRST = 1.0        # ms: everything below is bin 0
_BIN_COUNT = 145        # 1.1 ** 144 ms is about 9 days: nothing is slower


def bin_edges() -> list[float]:
    """Upper edges (ms) of the latency bins; the last bin is open-ended."""
    return [_BIN_FIRST * _BIN_RATIO ** i for i in range(_BIN_COUNT - 1)]


@lru_cache(maxsize=1)
def _bin_sql() -> str:
    whens = " ".join(f"WHEN latency_ms < {edge:.6f} THEN {i}" for i, edge in enumerate(bin_edges()))
    return f"CASE {whens} ELSE {_BIN_COUNT - 1} END"


def percentile_from_bins(bins: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram, interpolated geometrically inside its bin."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    edges = bin_edges()
    for b in sorted(bins):
        n = bins[b]
        if seen + n >= rank:
            lo = 0.0 if b == 0 else edges[b - 1]
            hi = edges[b] if b < len(edges) else lo * _BIN_RATIO
            frac = (rank - seen) / n if n else 0.0
            if lo <= 0:
                return hi * frac
            return lo * (hi / lo) ** frac
        seen += n
    return edges[-1]


def _bucket_sql(dialect: str) -> str:
    """Index of a row's time bucket: floor((ts - start) / width)."""
    if dialect == "postgres":
        return "CAST(FLOOR((ts - ?) / ?) AS BIGINT)"
    return "CAST((ts - ?) / ? AS INTEGER)"  # ts >= start, so truncation is floor


def _num(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _json_number(dialect: str, field: str) -> str:
    """A number inside the `extra` JSON text column."""
    if dialect == "postgres":
        return f"CAST(CAST(extra AS json)->>'{field}' AS DOUBLE PRECISION)"
    return f"json_extract(extra, '$.{field}')"


async def time_series(storage: Storage, since: float, until: float, width: float,
                      start: float | None = None) -> dict[str, Any]:
    """Requests, errors, spend and p50/p95 latency per time bucket, and the same over exactly [since, until).

    Buckets begin at `start` (default `since`; at most `since`): a first bucket that begins before `since`
    counts only its part from `since` on.
    """
    start = since if start is None else min(start, since)
    bucket = _bucket_sql(storage.dialect)
    rows = await storage.fetchall(
        f"SELECT {bucket} AS b, COUNT(*) AS n, SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors, "
        "COALESCE(SUM(cost), 0) AS spend, COALESCE(SUM(prompt_tokens), 0) AS pt, "
        "COALESCE(SUM(completion_tokens), 0) AS ct "
        "FROM request_log WHERE ts >= ? AND ts < ? GROUP BY 1",
        start, width, since, until)
    hist = await storage.fetchall(
        f"SELECT {bucket} AS b, {_bin_sql()} AS bin, COUNT(*) AS n FROM request_log "
        "WHERE ts >= ? AND ts < ? AND status < 400 AND latency_ms IS NOT NULL GROUP BY 1, 2",
        start, width, since, until)
    count = max(1, math.ceil((until - start) / width))
    per_bucket: dict[int, dict[int, int]] = {}
    overall: dict[int, int] = {}
    for r in hist:
        b, binno, n = int(r["b"]), int(r["bin"]), int(r["n"])
        per_bucket.setdefault(b, {})[binno] = n
        overall[binno] = overall.get(binno, 0) + n
    by_bucket = {int(r["b"]): r for r in rows}
    series = []
    for i in range(count):
        r = by_bucket.get(i)
        bins = per_bucket.get(i, {})
        series.append({
            "t": start + i * width,
            "requests": int(r["n"]) if r else 0,
            "errors": int(r["errors"] or 0) if r else 0,
            "spend": round(_num(r["spend"]), 9) if r else 0.0,
            "p50_ms": _round(percentile_from_bins(bins, 0.5)),
            "p95_ms": _round(percentile_from_bins(bins, 0.95)),
        })
    requests = sum(int(r["n"]) for r in rows)
    errors = sum(int(r["errors"] or 0) for r in rows)
    totals = {
        "requests": requests, "errors": errors, "error_rate": errors / requests if requests else 0.0,
        "spend": round(sum(_num(r["spend"]) for r in rows), 9),
        "prompt_tokens": int(sum(_num(r["pt"]) for r in rows)),
        "completion_tokens": int(sum(_num(r["ct"]) for r in rows)),
        "p50_ms": _round(percentile_from_bins(overall, 0.5)),
        "p95_ms": _round(percentile_from_bins(overall, 0.95)),
    }
    return {"since": since, "until": until, "bucket_seconds": width, "series": series, "totals": totals}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


async def top_keys(storage: Storage, since: float, until: float, limit: int = 10) -> list[dict[str, Any]]:
    rows = await storage.fetchall(
        "SELECT r.key_id AS key_id, MAX(k.name) AS name, COUNT(*) AS requests, "
        "SUM(CASE WHEN r.status >= 400 THEN 1 ELSE 0 END) AS errors, COALESCE(SUM(r.cost), 0) AS spend, "
        "COALESCE(SUM(r.prompt_tokens + r.completion_tokens), 0) AS tokens "
        "FROM request_log r LEFT JOIN api_keys k ON k.key_id = r.key_id "
        "WHERE r.ts >= ? AND r.ts < ? GROUP BY r.key_id ORDER BY spend DESC, requests DESC LIMIT ?",
        since, until, limit)
    return [{"key_id": r["key_id"], "name": r["name"] or _key_label(r["key_id"]), "requests": int(r["requests"]),
             "errors": int(r["errors"] or 0), "spend": round(_num(r["spend"]), 9), "tokens": int(_num(r["tokens"]))}
            for r in rows]


def _key_label(key_id: str | None) -> str:
    if key_id == "master":
        return "master key"
    return key_id or "(no key)"


async def top_models(storage: Storage, since: float, until: float, limit: int = 10) -> list[dict[str, Any]]:
    rows = await storage.fetchall(
        "SELECT COALESCE(model_used, model_requested) AS model, COUNT(*) AS requests, "
        "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors, COALESCE(SUM(cost), 0) AS spend, "
        "COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens, AVG(latency_ms) AS avg_ms "
        "FROM request_log WHERE ts >= ? AND ts < ? GROUP BY COALESCE(model_used, model_requested) "
        "ORDER BY spend DESC, requests DESC LIMIT ?",
        since, until, limit)
    return [{"model": r["model"], "requests": int(r["requests"]), "errors": int(r["errors"] or 0),
             "spend": round(_num(r["spend"]), 9), "tokens": int(_num(r["tokens"])),
             "avg_latency_ms": _round(_num(r["avg_ms"]))} for r in rows]


async def router_split(storage: Storage, since: float, until: float, routers: dict[str, tuple[str, str]], *,
                       key_id: str | None = None, team: str | None = None,
                       model: str | None = None) -> list[dict[str, Any]]:
    """Per router: how many requests went strong and weak, what they cost, and the cost had all gone strong.

    `routers` maps a router name to its (strong, weak) model names. A request
    the router sent elsewhere (a vision or long-context model) counts as
    "other". Failed requests count when they were charged (a hang-up pays
    for what the upstream produced); without a recorded `cost_if_strong`
    they count their own cost there, so the saving is never overstated.
    `key_id`, `team` and `model` narrow it as they narrow a usage report.
    """
    if_strong = _json_number(storage.dialect, "cost_if_strong")
    where, args = _split_filters(key_id, team, model)
    rows = await storage.fetchall(
        f"SELECT router, model_used, COUNT(*) AS requests, COALESCE(SUM(cost), 0) AS cost, "
        f"COALESCE(SUM(COALESCE({if_strong}, cost)), 0) AS cost_if_strong "
        f"FROM request_log WHERE ts >= ? AND ts < ? AND router IS NOT NULL AND (status < 400 OR cost > 0){where} "
        "GROUP BY router, model_used",
        since, until, *args)
    out: dict[str, dict[str, Any]] = {}
    for name, (strong, weak) in routers.items():
        out[name] = _empty_split(name, strong, weak)
    for r in rows:
        name = r["router"]
        strong, weak = routers.get(name, (None, None))
        split = out.setdefault(name, _empty_split(name, strong, weak))
        side = "strong" if r["model_used"] == strong else ("weak" if r["model_used"] == weak else "other")
        n = int(r["requests"])
        split[side] += n
        split["requests"] += n
        split["cost"] += _num(r["cost"])
        split["cost_if_strong"] += _num(r["cost_if_strong"])
    for split in out.values():
        split["saving"] = round(split["cost_if_strong"] - split["cost"], 9)
        split["saving_pct"] = split["saving"] / split["cost_if_strong"] if split["cost_if_strong"] > 0 else 0.0
        split["strong_share"] = split["strong"] / split["requests"] if split["requests"] else 0.0
        split["cost"] = round(split["cost"], 9)
        split["cost_if_strong"] = round(split["cost_if_strong"], 9)
    return sorted(out.values(), key=lambda s: s["router"])


def _split_filters(key_id: str | None, team: str | None, model: str | None) -> tuple[str, list[str]]:
    """SQL conditions (each after an AND) and their arguments: the usage report's key, team and model filters."""
    where, args = "", []
    for cond, value in (("key_id = ?", key_id), ("team = ?", team),
                        ("(model_used = ? OR (model_used IS NULL AND model_requested = ?))", model)):
        if value is not None:
            where += " AND " + cond
            args += [value] * cond.count("?")
    return where, args


def _empty_split(name: str, strong: str | None, weak: str | None) -> dict[str, Any]:
    return {"router": name, "strong_model": strong, "weak_model": weak, "requests": 0, "strong": 0, "weak": 0,
            "other": 0, "cost": 0.0, "cost_if_strong": 0.0}


async def deployment_traffic(storage: Storage, since: float, until: float) -> dict[str, dict[str, Any]]:
    """Per deployment over the window: requests, errors, tokens, mean and p50/p95 latency, last use."""
    rows = await storage.fetchall(
        "SELECT deployment, COUNT(*) AS requests, SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors, "
        "COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens, COALESCE(SUM(cost), 0) AS spend, "
        "MAX(ts) AS last_ts FROM request_log WHERE ts >= ? AND ts < ? AND deployment IS NOT NULL GROUP BY deployment",
        since, until)
    hist = await storage.fetchall(
        f"SELECT deployment, {_bin_sql()} AS bin, COUNT(*) AS n FROM request_log "
        "WHERE ts >= ? AND ts < ? AND deployment IS NOT NULL AND status < 400 AND latency_ms IS NOT NULL "
        "GROUP BY 1, 2", since, until)
    bins: dict[str, dict[int, int]] = {}
    for r in hist:
        bins.setdefault(r["deployment"], {})[int(r["bin"])] = int(r["n"])
    out = {}
    for r in rows:
        n, errors = int(r["requests"]), int(r["errors"] or 0)
        b = bins.get(r["deployment"], {})
        out[r["deployment"]] = {
            "requests": n, "errors": errors, "error_rate": errors / n if n else 0.0,
            "tokens": int(_num(r["tokens"])), "spend": round(_num(r["spend"]), 9), "last_used": r["last_ts"],
            "p50_ms": _round(percentile_from_bins(b, 0.5)), "p95_ms": _round(percentile_from_bins(b, 0.95)),
        }
    return out


async def attempt_failures(storage: Storage, since: float, until: float, limit: int = 5000) -> dict[str, int]:
    """Failed attempts per deployment, from the attempts recorded with requests that needed more than one.

    A request that failed over from A to B is logged under B; A's failure is
    only in the request's attempt list, and the models page should show it.
    """
    import orjson

    rows = await storage.fetchall(
        "SELECT extra FROM request_log WHERE ts >= ? AND ts < ? AND attempts > 1 AND extra IS NOT NULL "
        "ORDER BY ts DESC LIMIT ?", since, until, limit)
    failed: dict[str, int] = {}
    for r in rows:
        try:
            attempts = orjson.loads(r["extra"]).get("attempts") or []
        except (orjson.JSONDecodeError, AttributeError):
            continue
        for a in attempts[:-1] if isinstance(attempts, list) else []:
            dep = a.get("deployment") if isinstance(a, dict) else None
            if dep:
                failed[dep] = failed.get(dep, 0) + 1
    return failed


_LIST_COLUMNS = ("request_id", "ts", "key_id", "ingress", "endpoint", "model_requested", "model_used", "deployment",
                 "provider", "status", "error_type", "prompt_tokens", "completion_tokens", "cost", "latency_ms",
                 "ttft_ms", "stream", "attempts", "router", "router_score")


async def request_page(storage: Storage, *, key_id: str | None, model: str | None, status: str | None,
                       since: float | None, until: float | None, before: float | None,
                       limit: int) -> list[dict[str, Any]]:
    """One page of the request log, newest first; `before` is the `ts` of the last row of the previous page."""
    where, args = [], []
    if key_id:
        where.append("key_id = ?")
        args.append(key_id)
    if model:
        where.append("(model_requested = ? OR model_used = ?)")
        args += [model, model]
    if status == "ok":
        where.append("status < 400")
    elif status == "error":
        where.append("status >= 400")
    elif status:
        where.append("status = ?")
        args.append(int(status))
    for cond, value in (("ts >= ?", since), ("ts < ?", until), ("ts < ?", before)):
        if value is not None:
            where.append(cond)
            args.append(value)
    sql = (f"SELECT {', '.join(_LIST_COLUMNS)} FROM request_log"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ts DESC LIMIT ?")
    rows = await storage.fetchall(sql, *args, limit)
    for r in rows:
        r["stream"] = bool(r["stream"])
    return rows


async def request_detail(storage: Storage, request_id: str) -> dict[str, Any] | None:
    return await storage.fetchone("SELECT * FROM request_log WHERE request_id = ?", request_id)


async def key_usage(storage: Storage, since: float, until: float = 1e18) -> dict[str, dict[str, Any]]:
    """Per key: all-time spend, requests and last use, and spend in [since, until); for the keys page."""
    rows = await storage.fetchall(
        "SELECT key_id, COUNT(*) AS requests, COALESCE(SUM(cost), 0) AS spend, MAX(ts) AS last_used, "
        "COALESCE(SUM(CASE WHEN ts >= ? AND ts < ? THEN cost ELSE 0 END), 0) AS spend_recent "
        "FROM request_log WHERE key_id IS NOT NULL GROUP BY key_id", since, until)
    return {r["key_id"]: {"requests": int(r["requests"]), "spend": round(_num(r["spend"]), 9),
                          "spend_recent": round(_num(r["spend_recent"]), 9), "last_used": r["last_used"]}
            for r in rows}
