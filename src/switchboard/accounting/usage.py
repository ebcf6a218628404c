"""Usage and spend reports from the request log: requests, tokens, cost, errors, latency, grouped.

One query serves the admin API (`GET /admin/usage`), the CLI (`switchboard
usage`) and, later, a dashboard. Rows come back as plain dicts; `to_csv` and
`to_table` render them.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from switchboard.storage.base import Storage

GROUPS = ("key", "team", "model", "deployment", "provider", "day", "status")
METRICS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "avg_latency_ms", "max_latency_ms")


def _group_expr(group: str, dialect: str) -> str:
    if group == "day":
        if dialect == "postgres":
            return "to_char(to_timestamp(r.ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        return "strftime('%Y-%m-%d', r.ts, 'unixepoch')"
    return {"key": "r.key_id", "team": "r.team", "model": "COALESCE(r.model_used, r.model_requested)",
            "deployment": "r.deployment", "provider": "r.provider", "status": "r.status"}[group]


async def usage_report(storage: Storage, group_by: list[str], *, since: float | None = None,
                       until: float | None = None, key_id: str | None = None, model: str | None = None,
                       team: str | None = None) -> list[dict[str, Any]]:
    """Aggregate the request log. Raises ValueError for an unknown grouping."""
    for g in group_by:
        if g not in GROUPS:
            raise ValueError(f"unknown group {g!r}; use any of {', '.join(GROUPS)}")
    if len(set(group_by)) != len(group_by):
        raise ValueError(f"group_by names a group twice: {','.join(group_by)}")
    cols = [f"{_group_expr(g, storage.dialect)} AS {g}" for g in group_by]
    where, args = [], []
    for cond, value in (("r.ts >= ?", since), ("r.ts < ?", until), ("r.key_id = ?", key_id), ("r.team = ?", team),
                        ("(r.model_used = ? OR (r.model_used IS NULL AND r.model_requested = ?))", model)):
        if value is not None:
            where.append(cond)
            args += [value] * cond.count("?")
    sql = (
        "SELECT " + ", ".join(cols + [
            "COUNT(*) AS requests",
            "SUM(CASE WHEN r.status = 200 THEN 0 ELSE 1 END) AS errors",
            "COALESCE(SUM(r.prompt_tokens), 0) AS prompt_tokens",
            "COALESCE(SUM(r.completion_tokens), 0) AS completion_tokens",
            "COALESCE(SUM(r.cost), 0) AS cost_usd",
            "AVG(r.latency_ms) AS avg_latency_ms",
            "MAX(r.latency_ms) AS max_latency_ms",
        ])
        + " FROM request_log r"
        + (" WHERE " + " AND ".join(where) if where else "")
        + (" GROUP BY " + ", ".join(_group_expr(g, storage.dialect) for g in group_by) if group_by else "")
        + " ORDER BY " + (", ".join(f"{i + 1}" for i in range(len(group_by))) if group_by else "requests DESC")
    )
    rows = await storage.fetchall(sql, *args)
    out = []
    for r in rows:
        row = {g: r[g] for g in group_by}
        row.update(requests=int(r["requests"]), errors=int(r["errors"] or 0), prompt_tokens=int(r["prompt_tokens"]),
                   completion_tokens=int(r["completion_tokens"]), cost_usd=round(float(r["cost_usd"]), 9),
                   avg_latency_ms=round(float(r["avg_latency_ms"] or 0), 2),
                   max_latency_ms=round(float(r["max_latency_ms"] or 0), 2))
        out.append(row)
    return out


def to_csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """The rows as CSV with a header row; `columns` gives the header when there are no rows."""
    fields = list(rows[0]) if rows else list(columns or [])
    if not fields:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _inert(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def _inert(value: Any) -> Any:
    """A text cell a spreadsheet will not run: model names come from clients, and "=HYPERLINK(...)" is one."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_table(rows: list[dict[str, Any]], empty: str = "(no requests)") -> str:
    if not rows:
        return empty
    header = list(rows[0])
    cells = [header] + [[_cell(r[h]) for h in header] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    return printable(str(value))


def printable(text: str) -> str:
    """`text` with control characters shown escaped: a model name may carry a terminal's escape sequences."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
