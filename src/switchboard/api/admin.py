"""The admin REST API: keys, credits, budgets, the ledger and usage reports. Master key only.

    GET    /admin/keys                      list keys (?team=, ?include_revoked=true)
    POST   /admin/keys                      create a key; the only response that contains the secret
    GET    /admin/keys/{id}                 one key, with its balance and budgets
    PATCH  /admin/keys/{id}                 change limits, models, expiry, metadata, prepaid, budgets
    DELETE /admin/keys/{id}                 revoke (in force on every replica within key_cache_seconds)
    POST   /admin/keys/{id}/credits         append a top-up, refund or adjustment
    GET    /admin/keys/{id}/ledger          the key's ledger, newest first (?limit=, ?before=)
    GET    /admin/teams/{team}              a team's balance and budgets
    PATCH  /admin/teams/{team}              prepaid, budgets
    POST   /admin/teams/{team}/credits      as for keys
    GET    /admin/teams/{team}/ledger
    GET    /admin/ledger                    any account (?account=, ?request_id=, ?limit=, ?before=)
    GET    /admin/usage                     ?group_by=key,model,day &since= &until= &key= &model= &team= &format=json|csv

Money is given and shown in US dollars (`amount_usd`, `balance_usd`...), kept
exactly as integers of nano-dollars underneath. Every error is the OpenAI
error shape, like the rest of the gateway.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from switchboard.accounting.keys import EDITABLE, PERIODS, KeyRecord
from switchboard.accounting.ledger import KINDS
from switchboard.accounting.pricing import MAX_NANOS, to_nanos
from switchboard.api.params import check_order, check_text, int_param, text_param, timestamp_param
from switchboard.errors import InvalidRequest, MethodNotAllowed, NotFound
from switchboard.http.server import Request, Response

if TYPE_CHECKING:
    from switchboard.app import Gateway

PREFIX = "/admin/"
MAX_USD = MAX_NANOS / 1e9  # any amount of money in a request, and any balance


def install(gw: Gateway) -> None:
    for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):  # PUT too: its 405 names what the path allows
        gw.add_route(method, PREFIX, handle, prefix=True)
    gw.openapi_extensions = [*getattr(gw, "openapi_extensions", []), openapi_paths]


def _json(data: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(data))


def _body(request: Request) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


def allowed_methods(parts: list[str]) -> tuple[str, ...] | None:
    """The methods an admin path answers, or None for a path that does not exist."""
    if parts == ["keys"]:
        return ("GET", "POST")
    if parts in (["ledger"], ["usage"]):
        return ("GET",)
    if len(parts) in (2, 3) and parts[0] in ("keys", "teams"):
        rest = parts[2:]
        if rest == ["credits"]:
            return ("POST",)
        if rest == ["ledger"]:
            return ("GET",)
        if not rest:
            return ("DELETE", "GET", "PATCH") if parts[0] == "keys" else ("GET", "PATCH")
    return None


async def handle(gw: Gateway, request: Request) -> Response:
    await gw.auth.require_admin(request.headers)
    parts = [unquote(p) for p in request.path[len(PREFIX):].split("/") if p]  # team names may hold spaces...
    m = request.method
    allowed = allowed_methods(parts)
    if allowed is None:
        raise NotFound(f"Unknown admin path {request.method} {request.path}.")
    if m not in allowed:
        raise MethodNotAllowed(f"Method {m} is not allowed on {request.path}; use {', '.join(allowed)}.",
                               headers={"allow": ", ".join(allowed)})
    if parts == ["keys"]:
        if m == "GET":
            return await list_keys(gw, request)
        if m == "POST":
            return await create_key(gw, request)
    elif len(parts) >= 2 and parts[0] == "keys":
        record = await gw.auth.keys.get(check_text(parts[1], "key_id", limit=200))
        if record is None:
            raise NotFound(f"No API key with id {parts[1]!r}.", code="key_not_found")
        rest = parts[2:]
        if rest == [] and m == "GET":
            return _json(await key_view(gw, record))
        if rest == [] and m == "PATCH":
            return await update_key(gw, record, _body(request))
        if rest == [] and m == "DELETE":
            revoked = await gw.auth.keys.revoke(record.key_id)
            return _json(await key_view(gw, revoked or record))
        if rest == ["credits"] and m == "POST":
            return await post_credit(gw, record.account, _body(request))
        if rest == ["ledger"] and m == "GET":
            return await ledger(gw, request, record.account)
    elif len(parts) >= 2 and parts[0] == "teams":
        account = f"team:{check_text(parts[1], 'team', limit=200)}"
        rest = parts[2:]
        if rest == [] and m == "GET":
            return _json(await account_view(gw, account))
        if rest == [] and m == "PATCH":
            await apply_account_settings(gw, account, _body(request))
            return _json(await account_view(gw, account))
        if rest == ["credits"] and m == "POST":
            return await post_credit(gw, account, _body(request))
        if rest == ["ledger"] and m == "GET":
            return await ledger(gw, request, account)
    elif parts == ["ledger"] and m == "GET":
        return await ledger(gw, request, text_param(request.query_params(), "account"))
    elif parts == ["usage"] and m == "GET":
        return await usage(gw, request)
    else:
        raise NotFound(f"Unknown admin path {request.method} {request.path}.")
    raise MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}.")


# ---------------------------------------------------------------- keys


MAX_LIMIT = 2**31 - 1  # rpm, tpm, max_parallel: the storage's integer columns


def _opt_int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"'{name}' must be a positive integer (at most {MAX_LIMIT:,}) or null.", param=name)
    return value


def _usd(data: dict[str, Any], name: str, *, allow_negative: bool = False) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (value < 0 and not allow_negative) or abs(value) > MAX_USD:
        raise InvalidRequest(f"'{name}' must be a{'' if allow_negative else ' non-negative'} number of US dollars, "
                             f"at most {MAX_USD:,.0f}.", param=name)
    return to_nanos(float(value))


def key_fields(gw: Gateway, data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated editable key fields from a request body."""
    allowed = set(EDITABLE) | {"prepaid", "credits_usd", "budgets", "expires_in_seconds"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}; known fields: {', '.join(sorted(allowed))}.", param=unknown[0])
    out: dict[str, Any] = {}
    if "name" in data or creating:
        name = data.get("name")
        if (name is not None or not creating) and (not isinstance(name, str) or not 0 < len(name) <= 200):
            raise InvalidRequest("'name' must be a string of 1 to 200 characters.", param="name")
        if name is not None:
            check_text(name, "name", limit=200)
        out["name"] = name
    if "team" in data:
        team = data["team"]
        if team is not None and (not isinstance(team, str) or not team or len(team) > 200):
            raise InvalidRequest("'team' must be a non-empty string or null.", param="team")
        if team is not None:
            check_text(team, "team", limit=200)
        out["team"] = team
    if "allowed_models" in data:
        models = data["allowed_models"]
        if models is not None:
            if not isinstance(models, list) or not all(isinstance(x, str) for x in models):
                raise InvalidRequest("'allowed_models' must be a list of model names or null (all models).",
                                     param="allowed_models")
            known = set(gw.config.models) | set(gw.virtual_models()) | set(gw.wildcards.patterns())
            bad = [x for x in models if x not in known and gw.wildcards.matches(x) is None]
            if bad:
                raise InvalidRequest(f"Unknown model {bad[0]!r} in allowed_models; known: {', '.join(sorted(known))}.",
                                     param="allowed_models")
        out["allowed_models"] = models
    for name in ("rpm", "tpm", "max_parallel"):
        if name in data:
            out[name] = _opt_int(data, name)
    if "model_limits" in data:
        limits = data["model_limits"] or {}
        if not isinstance(limits, dict):
            raise InvalidRequest("'model_limits' must map model names to {rpm, tpm}.", param="model_limits")
        clean = {}
        known = set(gw.config.models) | set(gw.virtual_models())
        for model, spec in limits.items():
            if model not in known and gw.wildcards.matches(model) is None:
                raise InvalidRequest(f"Unknown model {model!r} in model_limits.", param="model_limits")
            if not isinstance(spec, dict) or set(spec) - {"rpm", "tpm"}:
                raise InvalidRequest(f"model_limits[{model!r}] must be an object with rpm and/or tpm.", param="model_limits")
            clean[model] = {k: v for k, v in ((k, _opt_int(spec, k)) for k in ("rpm", "tpm")) if v is not None}
        out["model_limits"] = clean
    if "expires_in_seconds" in data:
        seconds = data["expires_in_seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise InvalidRequest("'expires_in_seconds' must be a positive number.", param="expires_in_seconds")
        out["expires_at"] = time.time() + float(seconds)
    if "expires_at" in data:
        value = data["expires_at"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidRequest("'expires_at' must be a Unix timestamp or null.", param="expires_at")
        out["expires_at"] = value
    if "metadata" in data:
        if data["metadata"] is not None and not isinstance(data["metadata"], dict):
            raise InvalidRequest("'metadata' must be an object.", param="metadata")
        out["metadata"] = data["metadata"] or {}
    return out


def _budgets(data: dict[str, Any]) -> list[tuple[str, int | None, bool]] | None:
    if "budgets" not in data:
        return None
    items = data["budgets"]
    if not isinstance(items, list):
        raise InvalidRequest("'budgets' must be a list of {period, limit_usd, soft}.", param="budgets")
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("period") not in PERIODS or set(item) - {"period", "limit_usd", "soft"}:
            raise InvalidRequest(f"Each budget is {{period: {' | '.join(PERIODS)}, limit_usd: number | null, soft: bool}}.",
                                 param="budgets")
        soft = item.get("soft", False)
        if not isinstance(soft, bool):
            raise InvalidRequest("A budget's 'soft' must be true or false.", param="budgets")
        if any(p == item["period"] and s == soft for p, _, s in out):
            raise InvalidRequest(f"Two {'soft' if soft else 'hard'} {item['period']} budgets; give one.",
                                 param="budgets")
        cap = None if item.get("limit_usd") is None else _usd(item, "limit_usd")
        out.append((item["period"], cap, soft))
    return out


def check_account_settings(data: dict[str, Any], *, team: bool) -> list[tuple[str, int | None, bool]] | None:
    """Validate `prepaid` and `budgets` (before anything is written); returns the budgets, if given."""
    if team:
        unknown = sorted(set(data) - {"prepaid", "budgets"})
        if unknown:
            raise InvalidRequest(f"Unknown field {unknown[0]!r}; a team has prepaid and budgets.", param=unknown[0])
    if "prepaid" in data and not isinstance(data["prepaid"], bool):
        raise InvalidRequest("'prepaid' must be true or false.", param="prepaid")
    return _budgets(data)


async def apply_account_settings(gw: Gateway, account: str, data: dict[str, Any]) -> None:
    """`prepaid` and `budgets` of a key or team account: all checked, then written."""
    budgets = check_account_settings(data, team=account.startswith("team:"))
    if "prepaid" in data:
        await gw.admission.ledger.set_prepaid(account, data["prepaid"])
    if budgets is not None:
        for period in PERIODS:
            for soft in (False, True):
                wanted = next((cap for p, cap, s in budgets if p == period and s == soft), None)
                await gw.admission.ledger.set_budget(account, period, wanted, soft=soft)
    gw.auth.keys._cache.clear()  # this replica sees the change at once; the others within key_cache_seconds


async def create_key(gw: Gateway, request: Request) -> Response:
    data = _body(request)
    fields = key_fields(gw, data, creating=True)
    credits = _usd(data, "credits_usd") if "credits_usd" in data else None
    budgets = _budgets(data)
    prepaid = data.get("prepaid", credits is not None)
    if not isinstance(prepaid, bool):
        raise InvalidRequest("'prepaid' must be true or false.", param="prepaid")
    record, token = await gw.auth.keys.create(fields, prepaid=prepaid)
    if credits:
        await gw.admission.ledger.post(record.account, "topup", credits, note="initial credit")
    if budgets is not None:
        await apply_account_settings(gw, record.account, {"budgets": data["budgets"]})
    view = await key_view(gw, record)
    view["key"] = token
    return _json(view, 201)


async def update_key(gw: Gateway, record: KeyRecord, data: dict[str, Any]) -> Response:
    """Every field is checked before any is written: a 400 changes nothing."""
    if "credits_usd" in data:
        raise InvalidRequest("Add credit with POST /admin/keys/{id}/credits, not PATCH.", param="credits_usd")
    fields = key_fields(gw, data, creating=False)
    account = {k: data[k] for k in ("prepaid", "budgets") if k in data}
    check_account_settings(account, team=False)
    updated = await gw.auth.keys.update(record.key_id, fields) if fields else record
    await apply_account_settings(gw, record.account, account)
    return _json(await key_view(gw, updated or record))


_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


def _flag(params: dict[str, str], name: str) -> bool:
    """A boolean query parameter (absent: false); anything but true/false, 1/0, yes/no is a 400."""
    value = params.get(name, "").lower()
    if value not in _TRUE + _FALSE:
        raise InvalidRequest(f"'{name}' must be true or false; got {value[:40]!r}.", param=name)
    return value in _TRUE


async def list_keys(gw: Gateway, request: Request) -> Response:
    q = request.query_params()
    records = await gw.auth.keys.list(team=text_param(q, "team"), include_revoked=_flag(q, "include_revoked"))
    return _json({"object": "list", "data": [await key_view(gw, r) for r in records]})


async def account_view(gw: Gateway, account: str) -> dict[str, Any]:
    row = await gw.admission.ledger.account(account)
    balance = int(row["balance"]) if row else 0
    reserved = int(row["reserved"]) if row else 0
    return {"account": account, "prepaid": bool(row["prepaid"]) if row else False,
            "balance_usd": balance / 1e9, "reserved_usd": reserved / 1e9, "available_usd": (balance - reserved) / 1e9,
            "budgets": await gw.admission.ledger.budgets(account)}


async def key_view(gw: Gateway, record: KeyRecord) -> dict[str, Any]:
    view = record.public()
    view["credit"] = await account_view(gw, record.account)
    return view


# ---------------------------------------------------------------- credits, ledger, usage


async def post_credit(gw: Gateway, account: str, data: dict[str, Any]) -> Response:
    kind = data.get("kind", "topup")
    if kind not in KINDS or kind == "charge":
        raise InvalidRequest("'kind' must be one of topup, refund, adjustment (charges are made by requests).", param="kind")
    unknown = sorted(set(data) - {"kind", "amount_usd", "note"})
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}; send amount_usd, kind and note.", param=unknown[0])
    amount = _usd(data, "amount_usd", allow_negative=kind == "adjustment")
    if amount == 0:
        raise InvalidRequest("'amount_usd' must not be zero.", param="amount_usd")
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise InvalidRequest("'note' must be a string.", param="note")
    if note is not None:
        check_text(note, "note", limit=2000, line_breaks=True)
    try:
        await gw.admission.ledger.post(account, kind, amount, note=note)
    except ValueError as exc:  # the balance would overflow
        raise InvalidRequest(f"Refused: {exc}.", param="amount_usd") from None
    gw.auth.keys._cache.clear()
    return _json(await account_view(gw, account), 201)


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "ts": row["ts"], "account": row["account"], "kind": row["kind"],
            "amount_usd": int(row["amount"]) / 1e9, "amount_nanousd": int(row["amount"]),
            "request_id": row["request_id"], "model": row["model"], "note": row["note"]}


async def ledger(gw: Gateway, request: Request, account: str | None) -> Response:
    q = request.query_params()
    limit = int_param(q, "limit", 100, 1, 10_000)
    before = int_param(q, "before", 0, 1, 2**63 - 1) or None
    rows = await gw.admission.ledger.entries(account, limit=limit + 1, before=before,  # one more: a next page?
                                             request_id=text_param(q, "request_id"))
    data = [_entry(r) for r in rows[:limit]]
    body: dict[str, Any] = {"object": "list", "data": data, "has_more": len(rows) > limit}
    if account:
        body["total_usd"] = await gw.admission.ledger.total(account) / 1e9
        body["total_nanousd"] = await gw.admission.ledger.total(account)
    return _json(body)


async def usage(gw: Gateway, request: Request) -> Response:
    from switchboard.accounting.usage import METRICS, to_csv, usage_report

    q = request.query_params()
    group_by = [g for g in (q.get("group_by") or "key,model,day").split(",") if g]
    fmt = q.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise InvalidRequest(f"'format' must be json or csv; got {fmt[:40]!r}.", param="format")
    since, until = timestamp_param(q, "since"), timestamp_param(q, "until")
    check_order(since, until)
    await gw.request_log.flush()  # include this replica's entries not yet written
    filters = {"key_id": text_param(q, "key"), "model": text_param(q, "model"), "team": text_param(q, "team")}
    try:
        rows = await usage_report(gw.storage, group_by, since=since, until=until, **filters)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="group_by") from None
    if fmt == "csv":
        return Response(200, to_csv(rows, [*group_by, *METRICS]).encode(), content_type="text/csv")
    totals = {k: sum(r[k] for r in rows) for k in ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd")}
    from switchboard.api.dashboard_queries import router_split

    routers = await router_split(gw.storage, since or 0.0, until or 1e18,
                                 {name: (r.settings.strong, r.settings.weak) for name, r in gw.routers.items()},
                                 **filters)
    return _json({"object": "usage_report", "group_by": group_by, "data": rows, "totals": totals, "routers": routers})


# ---------------------------------------------------------------- OpenAPI


def openapi_paths(paths: dict[str, Any]) -> None:
    sec = [{"bearer": []}]
    err = {"$ref": "#/components/schemas/Error"}

    def op(op_id: str, summary: str, *, body: bool = False, params: tuple[str, ...] = (), query: tuple[str, ...] = (),
           created: bool = False) -> dict[str, Any]:
        o: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": ["admin"], "security": sec,
                             "responses": {"201" if created else "200": {"description": "OK", "content": {
                                 "application/json": {"schema": {"type": "object"}}}}}}
        for code, desc in (("400", "Invalid request"), ("401", "Missing or wrong key"), ("403", "Not the master key"),
                           ("404", "Not found")):
            o["responses"][code] = {"description": desc, "content": {"application/json": {"schema": err}}}
        parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
        parameters += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in query]
        if parameters:
            o["parameters"] = parameters
        if body:
            o["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        return o

    paths["/admin/keys"] = {
        "get": op("listKeys", "List API keys", query=("team", "include_revoked")),
        "post": op("createKey", "Create an API key (the secret is returned once)", body=True, created=True)}
    paths["/admin/keys/{key_id}"] = {
        "get": op("getKey", "One key with balance and budgets", params=("key_id",)),
        "patch": op("updateKey", "Change a key", params=("key_id",), body=True),
        "delete": op("revokeKey", "Revoke a key", params=("key_id",))}
    paths["/admin/keys/{key_id}/credits"] = {
        "post": op("addKeyCredit", "Top up, refund or adjust a key's credit", params=("key_id",), body=True, created=True)}
    paths["/admin/keys/{key_id}/ledger"] = {
        "get": op("keyLedger", "A key's ledger, newest first", params=("key_id",), query=("limit", "before"))}
    paths["/admin/teams/{team}"] = {
        "get": op("getTeam", "A team's balance and budgets", params=("team",)),
        "patch": op("updateTeam", "Set a team's prepaid flag and budgets", params=("team",), body=True)}
    paths["/admin/teams/{team}/credits"] = {
        "post": op("addTeamCredit", "Top up, refund or adjust a team's credit", params=("team",), body=True, created=True)}
    paths["/admin/teams/{team}/ledger"] = {
        "get": op("teamLedger", "A team's ledger", params=("team",), query=("limit", "before"))}
    paths["/admin/ledger"] = {
        "get": op("ledger", "Ledger entries of any account", query=("account", "request_id", "limit", "before"))}
    paths["/admin/usage"] = {
        "get": op("usage", "Requests, tokens, cost, errors and latency, grouped",
                  query=("group_by", "since", "until", "key", "model", "team", "format"))}
