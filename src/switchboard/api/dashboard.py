"""The operator's dashboard: a static single-page app at /ui and the JSON it reads.

The page (HTML, JS, CSS in `switchboard/data/ui/`, no build step, no CDN) is
public: it holds no data. Every number on it comes from the master-key-only
JSON endpoints below, or from the admin API (`api/admin.py`) for keys and
credits. The browser keeps the master key in `sessionStorage` (gone when the
tab closes) and sends it as a Bearer token; no cookie is set, so there is no
cross-site request to forge.

    GET /admin/dashboard/info          version, models, routers, what is stored
    GET /admin/dashboard/overview      time series, totals, top keys and models, router split and saving
    GET /admin/dashboard/deployments   per deployment: breaker, live load, traffic from the log
    GET /admin/dashboard/requests      the request log, filtered, newest first
    GET /admin/dashboard/request       one request in full (?id=)
    GET /admin/dashboard/keys-usage    spend, requests and last use per key
    GET /admin/dashboard/reports       compare and shadow reports found in `dashboard.reports_dir`
    GET /admin/dashboard/report        one report file (?path=)

Config (all optional):

    dashboard:
      enabled: true            # false: no /ui and no /admin/dashboard endpoints
      reports_dir: reports     # where `switchboard compare --out` and shadow reports are written
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.api import dashboard_queries as q
from switchboard.api.params import check_order, int_param, text_param, timestamp_param
from switchboard.errors import InvalidRequest, NotFound
from switchboard.http.server import Request, Response

if TYPE_CHECKING:
    from switchboard.app import Gateway

API = "/admin/dashboard/"

_RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
_STEPS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_MAX_POINTS = 96

# Keys of the request log's `extra` that hold prompt or answer text: shown only when prompts are stored.
_BODY_KEYS = frozenset({"prompt", "prompts", "messages", "request_body", "request", "response", "response_body",
                        "completion", "output", "input", "body"})
# Keys that could hold a credential: never shown, whatever the settings.
_SECRET_MARKERS = ("api_key", "apikey", "authorization", "secret", "password", "token_value", "x-api-key")


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    enabled: bool = True
    reports_dir: str = "reports"


def dashboard_settings(gw: Gateway) -> DashboardSettings:
    """Read the `dashboard:` config section, with line-numbered errors like the rest of the config."""
    config = gw.config
    raw = config.raw.get("dashboard") if isinstance(config.raw, dict) else None
    if raw is None or config.doc is None:
        return DashboardSettings()
    from switchboard.config import _Section

    sec = _Section(config.doc, ("dashboard",), raw, {})
    base = DashboardSettings()
    out = DashboardSettings(enabled=sec.bool("enabled", base.enabled),
                            reports_dir=sec.str("reports_dir", base.reports_dir) or base.reports_dir)
    sec.done()
    return out


def install(gw: Gateway) -> None:
    """Add the /ui page and the dashboard's JSON endpoints to a gateway (unless `dashboard.enabled` is false)."""
    settings = dashboard_settings(gw)
    if not settings.enabled:
        return
    gw.dashboard = Dashboard(settings)  # type: ignore[attr-defined]
    gw.add_route("GET", "/ui", ui_index)
    gw.add_route("GET", "/ui/", ui_asset, prefix=True)
    for name, handler in (("info", info), ("overview", overview), ("deployments", deployments),
                          ("requests", requests), ("request", request_detail), ("keys-usage", keys_usage),
                          ("reports", reports), ("report", report_file)):
        gw.add_route("GET", API + name, handler)
    gw.openapi_extensions = [*getattr(gw, "openapi_extensions", []), openapi_paths]


class Dashboard:
    """What the dashboard keeps per gateway: its settings and the static files, read once."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.reports_dir = Path(settings.reports_dir).expanduser()
        self._assets: dict[str, tuple[bytes, str]] | None = None
        self._version = ""

    async def assets(self) -> tuple[dict[str, tuple[bytes, str]], str]:
        if self._assets is None:
            assets = await asyncio.to_thread(_load_assets)
            digest = hashlib.sha256()
            for name in sorted(assets):
                digest.update(name.encode() + assets[name][0])
            self._version = digest.hexdigest()[:12]
            self._assets = assets
        return self._assets, self._version


# ---------------------------------------------------------------- static files

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".ico": "image/x-icon", ".json": "application/json"}

# Scripts only from the gateway, no eval, no framing of the dashboard. Inline *styles* are allowed because a
# report shown in the sandboxed srcdoc frame inherits this policy and carries its own <style>.
_SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data: blob:; frame-src 'self' blob: data:; object-src 'none'; "
                                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def _load_assets() -> dict[str, tuple[bytes, str]]:
    from importlib.resources import files

    root = files("switchboard") / "data" / "ui"
    out = {}
    for entry in root.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in _TYPES:
            out[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return out


def _dashboard(gw: Gateway) -> Dashboard:
    return gw.dashboard  # type: ignore[attr-defined]


async def ui_index(gw: Gateway, request: Request) -> Response:
    assets, version = await _dashboard(gw).assets()
    page = assets.get("index.html")
    if page is None:
        raise NotFound("The dashboard's files are missing from this installation.")
    body = page[0].replace(b"{{v}}", version.encode())
    return Response(200, body, {**_SECURITY_HEADERS, "cache-control": "no-cache"}, content_type=page[1])


async def ui_asset(gw: Gateway, request: Request) -> Response:
    assets, version = await _dashboard(gw).assets()
    name = request.path[len("/ui/"):]
    asset = assets.get(name) if name != "index.html" else None
    if asset is None:
        raise NotFound(f"No dashboard file {name!r}.")
    # index.html links every asset with ?v=<hash of all assets>: such a URL never changes content.
    cache = "public, max-age=31536000, immutable" if request.query_params().get("v") == version else "no-cache"
    return Response(200, asset[0], {**_SECURITY_HEADERS, "cache-control": cache}, content_type=asset[1])


# ---------------------------------------------------------------- JSON helpers


def _json(data: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(data), {"cache-control": "no-store"})


def time_range(params: dict[str, str], default: str = "24h") -> tuple[float, float, float]:
    """(since, until, chart bucket width) from `range=1h|...` or `since`/`until`.

    `since` is kept as given: totals cover exactly [since, until). Only a chart aligns its buckets (`chart_start`).
    """
    now = time.time()
    until = timestamp_param(params, "until") or now
    since = timestamp_param(params, "since")
    if since is None:
        name = params.get("range") or default
        if name not in _RANGES:
            raise InvalidRequest(f"'range' must be one of {', '.join(_RANGES)}; got {name!r}.", param="range")
        since = until - _RANGES[name]
    check_order(since, until)
    span = until - since
    width = next((s for s in _STEPS if span / s <= _MAX_POINTS), _STEPS[-1])
    if span / width > _MAX_POINTS * 4:
        width = span / _MAX_POINTS
    return since, until, float(width)


def chart_start(since: float, width: float) -> float:
    """Where a chart's first bucket begins: `since` floored to the bucket width, so buckets fall on round times."""
    return (since // width) * width


async def _admin(gw: Gateway, request: Request) -> dict[str, str]:
    """Refuse anyone but the operator (401 without a valid key, 403 for a non-admin key); the query parameters."""
    await gw.auth.require_admin(request.headers)
    await gw.request_log.flush()  # this replica's newest requests, not yet written, belong on the page
    return request.query_params()


def _router_models(gw: Gateway) -> dict[str, tuple[str, str]]:
    out = {}
    for name, router in getattr(gw, "routers", {}).items():
        settings = getattr(router, "settings", None)
        if settings is not None:
            out[name] = (settings.strong, settings.weak)
    return out


# ---------------------------------------------------------------- endpoints


async def info(gw: Gateway, request: Request) -> Response:
    await _admin(gw, request)
    from switchboard import __version__

    return _json({
        "version": __version__, "started_at": gw.started_at, "storage": gw.storage.name,
        "models": sorted(gw.config.models), "routers": [{"name": n, "strong": s, "weak": w}
                                                        for n, (s, w) in sorted(_router_models(gw).items())],
        "store_prompts": gw.config.storage.store_prompts,
        "reports_dir": str(_dashboard(gw).reports_dir),
    })


async def overview(gw: Gateway, request: Request) -> Response:
    params = await _admin(gw, request)
    since, until, width = time_range(params)
    storage = gw.storage
    series, keys, models, split = await asyncio.gather(
        q.time_series(storage, since, until, width, start=chart_start(since, width)),
        q.top_keys(storage, since, until), q.top_models(storage, since, until),
        q.router_split(storage, since, until, _router_models(gw)))
    return _json({**series, "top_keys": keys, "top_models": models, "routers": split})


async def deployments(gw: Gateway, request: Request) -> Response:
    params = await _admin(gw, request)
    since, until, _ = time_range(params, default="1h")
    traffic = await q.deployment_traffic(gw.storage, since, until)
    failed_attempts = await q.attempt_failures(gw.storage, since, until)
    from switchboard.routing.health import STATE_NAMES

    executor = gw.executor
    health = getattr(executor, "health", None)
    balancer = getattr(executor, "balancer", None)
    if health is not None:
        health.sync()
    mono, now = time.monotonic(), time.time()
    models = []
    for model in (*gw.config.models.values(), *gw.wildcards.made.values()):  # wildcards' once used
        deps = []
        for dep in model.deployments:
            row: dict[str, Any] = {
                "id": dep.id, "provider": dep.provider, "upstream_model": dep.upstream_model,
                "base_url": _without_userinfo(dep.base_url), "weight": dep.weight, "rpm_limit": dep.rpm,
                "tpm_limit": dep.tpm,
                "traffic": traffic.get(dep.id, {"requests": 0, "errors": 0, "error_rate": 0.0, "tokens": 0,
                                                "spend": 0.0, "last_used": None, "p50_ms": None, "p95_ms": None}),
                "failed_attempts": failed_attempts.get(dep.id, 0),
            }
            if health is not None:
                b = health.breaker(dep)
                state = b.current_state(mono)
                row["breaker"] = {"state": STATE_NAMES[state], "cooldown_remaining_s": round(max(0.0, b.until - mono), 2)
                                  if state == 2 else 0.0, "consecutive_failures": b.consecutive,
                                  "times_opened": b.opened_count, "by_retry_after": b.opened_by_retry_after}
            if balancer is not None:
                stats = balancer.stats.get(dep.id)
                if stats is not None:
                    rpm, tpm = stats.rate(now)
                    row["live"] = {"in_flight": stats.in_flight, "rpm": round(rpm, 1), "tpm": round(tpm, 1),
                                   "ewma_latency_ms": _ms(stats.ewma_latency), "ewma_ttft_ms": _ms(stats.ewma_ttft),
                                   "recent_p50_ms": _ms(stats.percentile(50)), "recent_p95_ms": _ms(stats.percentile(95))}
                else:
                    row["live"] = {"in_flight": 0, "rpm": 0.0, "tpm": 0.0, "ewma_latency_ms": None,
                                   "ewma_ttft_ms": None, "recent_p50_ms": None, "recent_p95_ms": None}
            deps.append(row)
        models.append({"name": model.name, "strategy": model.strategy, "fallbacks": model.fallbacks, "deployments": deps})
    routers = [{"name": n, "strong": s, "weak": w} for n, (s, w) in sorted(_router_models(gw).items())]
    return _json({"since": since, "until": until, "models": models, "routers": routers})


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _without_userinfo(url: str | None) -> str | None:
    """A base URL as the page shows it: without `user:password@`."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


async def requests(gw: Gateway, request: Request) -> Response:
    params = await _admin(gw, request)
    status = params.get("status") or None
    if status not in (None, "ok", "error") and not (status.isascii() and status.isdigit() and len(status) == 3
                                                    and 100 <= int(status) <= 599):
        raise InvalidRequest("'status' must be an HTTP status code, 'ok' or 'error'.", param="status")
    limit = int_param(params, "limit", 50, 1, 500)
    since, until = timestamp_param(params, "since"), timestamp_param(params, "until")
    check_order(since, until)
    before = timestamp_param(params, "before")
    rows = await q.request_page(gw.storage, key_id=text_param(params, "key"), model=text_param(params, "model"),
                                status=status, since=since, until=until,
                                before=before, limit=limit + 1)  # one more: is there a next page?
    page = rows[:limit]
    return _json({"object": "list", "data": page, "has_more": len(rows) > limit,
                  "next_before": page[-1]["ts"] if page else None})


async def request_detail(gw: Gateway, request: Request) -> Response:
    params = await _admin(gw, request)
    request_id = text_param(params, "id")
    if not request_id:
        raise InvalidRequest("Give the request id as ?id=.", param="id")
    row = await q.request_detail(gw.storage, request_id)
    if row is None:
        raise NotFound(f"No request {request_id!r} in the log.", code="request_not_found")
    return _json(present_request(row, store_prompts=gw.config.storage.store_prompts))


def present_request(row: dict[str, Any], *, store_prompts: bool) -> dict[str, Any]:
    """A logged request as the detail view shows it: extra parsed, never a credential, bodies only if stored."""
    out = dict(row)
    out["stream"] = bool(out.get("stream"))
    extra: dict[str, Any] = {}
    if out.get("extra"):
        try:
            parsed = orjson.loads(out["extra"])
            extra = parsed if isinstance(parsed, dict) else {"value": parsed}
        except orjson.JSONDecodeError:
            extra = {}
    extra = _scrub(extra)
    bodies = {k: extra.pop(k) for k in list(extra) if k in _BODY_KEYS}
    out["extra"] = extra
    attempts = extra.pop("attempts", None) or []
    if not attempts and out.get("deployment") and out.get("attempts"):
        # One clean attempt is not itemised in the log (pipeline.settle): it is the request itself.
        attempts = [{"deployment": out["deployment"], "model": out.get("model_used"), "ms": None,
                     "error": None, "message": None}]
    out["attempt_list"] = attempts
    out["bodies"] = bodies if store_prompts else None
    out["bodies_stored"] = store_prompts
    return out


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[redacted]" if any(m in str(k).lower() for m in _SECRET_MARKERS) else _scrub(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


async def keys_usage(gw: Gateway, request: Request) -> Response:
    params = await _admin(gw, request)
    since, until, _ = time_range(params, default="24h")
    return _json({"since": since, "until": until, "data": await q.key_usage(gw.storage, since, until)})


# ---------------------------------------------------------------- reports

_REPORT_FILES = (".json", ".html", ".csv", ".png", ".svg", ".md", ".txt")


def _scan_reports(root: Path) -> list[dict[str, Any]]:
    """Each folder of `root` (and root itself) that holds a report: its files and a short summary."""
    if not root.is_dir():
        return []
    found = []
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir() and len(p.relative_to(root).parts) <= 3)]:
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in _REPORT_FILES
                       and f.name != "responses.jsonl")
        if not any(f.suffix in (".html", ".json") for f in files):
            continue
        entry: dict[str, Any] = {"name": str(folder.relative_to(root)) if folder != root else ".",
                                 "kind": "report", "modified": max(f.stat().st_mtime for f in files),
                                 "files": [{"path": str(f.relative_to(root)), "size": f.stat().st_size,
                                            "type": f.suffix[1:]} for f in files],
                                 "summary": {}}
        for f in files:
            if f.suffix == ".json" and f.stat().st_size < 20_000_000:
                kind, summary = _summarise(f)
                if kind:
                    entry["kind"], entry["summary"] = kind, summary
                    break
        found.append(entry)
    found.sort(key=lambda e: e["modified"], reverse=True)
    return found


def _summarise(path: Path) -> tuple[str | None, dict[str, Any]]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None, {}
    if not isinstance(data, dict):
        return None, {}
    if "summaries" in data and "models" in data:
        return "compare", {"created": data.get("created"), "dataset": data.get("dataset"),
                           "items": data.get("n_items"), "models": data.get("models"),
                           "recommendation": data.get("recommendation")}
    if "pairs" in data or "candidates" in data or "shadow" in path.name:
        return "shadow", {k: v for k, v in data.items() if isinstance(v, (str, int, float)) and len(str(v)) < 200}
    return None, {}


async def reports(gw: Gateway, request: Request) -> Response:
    await _admin(gw, request)
    root = _dashboard(gw).reports_dir
    found = await asyncio.to_thread(_scan_reports, root)
    return _json({"object": "list", "reports_dir": str(root), "exists": root.is_dir(), "data": found})


async def report_file(gw: Gateway, request: Request) -> Response:
    params = await _admin(gw, request)
    rel = text_param(params, "path") or ""
    root = _dashboard(gw).reports_dir.resolve()
    try:
        target = (root / rel).resolve()
    except (OSError, ValueError):
        target = root
    if not rel or root not in target.parents or target.suffix not in _REPORT_FILES:
        raise NotFound(f"No report file {rel[:200]!r}.", code="report_not_found")
    try:
        body = await asyncio.to_thread(target.read_bytes)
    except OSError:
        raise NotFound(f"No report file {rel!r}.", code="report_not_found") from None
    content_type = _TYPES.get(target.suffix, "text/plain; charset=utf-8")
    # A report is shown inside a sandboxed frame; never let it run as the dashboard's own origin.
    headers = {"cache-control": "no-store", "x-content-type-options": "nosniff",
               "content-security-policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"}
    return Response(200, body, headers, content_type=content_type)


# ---------------------------------------------------------------- OpenAPI


def openapi_paths(paths: dict[str, Any]) -> None:
    err = {"$ref": "#/components/schemas/Error"}

    def op(op_id: str, summary: str, query: tuple[str, ...] = (), content: str = "application/json") -> dict[str, Any]:
        responses: dict[str, Any] = {"200": {"description": "OK", "content": {content: {"schema": {"type": "object"}
                                                                                       if content == "application/json"
                                                                                       else {"type": "string"}}}}}
        for code, desc in (("400", "Invalid parameter"), ("401", "Missing or wrong key"), ("403", "Not the master key"),
                           ("404", "Not found")):
            responses[code] = {"description": desc, "content": {"application/json": {"schema": err}}}
        o: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": ["dashboard"],
                             "security": [{"bearer": []}], "responses": responses}
        if query:
            o["parameters"] = [{"name": n, "in": "query", "required": n in ("id", "path"), "schema": {"type": "string"}}
                               for n in query]
        return o

    rng = ("range", "since", "until")
    paths[API + "info"] = {"get": op("dashboardInfo", "Gateway version, models, routers and dashboard settings")}
    paths[API + "overview"] = {"get": op(
        "dashboardOverview", "Requests, errors, spend, p50/p95 latency per time bucket; top keys and models; "
        "each router's strong/weak split and saving against all-strong", rng)}
    paths[API + "deployments"] = {"get": op(
        "dashboardDeployments", "Per deployment: breaker state and cooldown, live load, traffic and errors", rng)}
    paths[API + "requests"] = {"get": op("dashboardRequests", "The request log, newest first",
                                         ("key", "model", "status", "since", "until", "before", "limit"))}
    paths[API + "request"] = {"get": op("dashboardRequest", "One request: attempts, routing, tokens, cost, timings",
                                        ("id",))}
    paths[API + "keys-usage"] = {"get": op("dashboardKeysUsage", "Spend, requests and last use per key", rng)}
    paths[API + "reports"] = {"get": op("dashboardReports", "Compare and shadow reports in dashboard.reports_dir")}
    paths[API + "report"] = {"get": op("dashboardReport", "One report file", ("path",), content="text/html")}
    paths["/ui"] = {"get": {"operationId": "dashboardPage", "summary": "The dashboard (a static page; its data needs "
                            "the master key)", "tags": ["dashboard"],
                            "responses": {"200": {"description": "HTML", "content": {"text/html": {
                                "schema": {"type": "string"}}}}}}}
