"""`switchboard keys ...`, `switchboard credits ...`, `switchboard usage`: the admin API from a shell.

These verbs talk to a running gateway's admin API (``--url``, default
$SWITCHBOARD_URL or http://127.0.0.1:4000; ``--admin-key``, default
$SWITCHBOARD_MASTER_KEY), never to its database directly: one code path, the
same rules and validation whether the store is SQLite or Postgres, and it
works against a remote fleet.

    switchboard keys create --name app-a --team web --credits 25 --rpm 60 --models gpt-4o-mini
    switchboard keys list
    switchboard keys update KEY_ID --tpm 100000
    switchboard keys revoke KEY_ID
    switchboard credits add KEY_ID 10 --note "September top-up"
    switchboard credits show KEY_ID
    switchboard credits ledger KEY_ID
    switchboard usage --by key,model,day --format csv
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from switchboard import argtypes


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    import urllib.error  # here, not at the top: `switchboard serve` never needs it
    import urllib.request

    url = args.url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"}
    if args.admin_key:
        headers["authorization"] = f"Bearer {args.admin_key}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return raw.decode() if resp.headers.get("content-type", "").startswith("text/csv") else json.loads(raw)
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except Exception:
            message = str(exc)
        raise SystemExit(f"switchboard: {exc.code}: {message}") from None
    except OSError as exc:
        raise SystemExit(f"switchboard: cannot reach the gateway at {args.url}: {exc}") from None


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _key_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("name", "team"):
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    # Given as `none` (`*` for --models) they are None: the API's null, which lifts the limit.
    for name in ("rpm", "tpm", "max_parallel"):
        if hasattr(args, name):
            body[name] = getattr(args, name)
    if hasattr(args, "expires_in"):
        if args.expires_in is None:
            body["expires_at"] = None
        else:
            body["expires_in_seconds"] = args.expires_in
    if hasattr(args, "models"):
        body["allowed_models"] = args.models
    if getattr(args, "metadata", None):
        try:
            body["metadata"] = json.loads(args.metadata)
        except json.JSONDecodeError:
            raise SystemExit(f"switchboard: --metadata {args.metadata!r} is not JSON") from None
    budgets = []
    for spec, soft in ((getattr(args, "budget", None) or [], False), (getattr(args, "soft_budget", None) or [], True)):
        for item in spec:
            period, _, amount = item.partition("=")
            try:
                budgets.append({"period": period, "limit_usd": argtypes.usd(amount), "soft": soft})
            except argparse.ArgumentTypeError:
                raise SystemExit(f"switchboard: budget {item!r}: expected PERIOD=USD, e.g. month=100") from None
    if getattr(args, "no_budgets", False):
        if budgets:
            raise SystemExit("switchboard: --no-budgets and --budget/--soft-budget contradict each other; give one")
        body["budgets"] = []
    elif budgets:
        body["budgets"] = budgets
    if getattr(args, "prepaid", None) is not None:
        body["prepaid"] = args.prepaid
    return body


def _keys_table(keys: list[dict[str, Any]]) -> str:
    from switchboard.accounting.usage import to_table

    rows = [{"id": k["id"], "name": k["name"], "team": k["team"], "status": k["status"],
             "balance_usd": k["credit"]["balance_usd"], "prepaid": k["credit"]["prepaid"], "rpm": k["rpm"],
             "tpm": k["tpm"], "models": ",".join(k["allowed_models"]) if k["allowed_models"] else "*"} for k in keys]
    return to_table(rows)


def _account_path(target: str) -> str:
    from urllib.parse import quote

    if not target.strip() or target.strip() == "team:":
        raise SystemExit(f"switchboard: {target!r} names no account: give a key id or team:NAME (e.g. team:web)")
    return f"/admin/teams/{quote(target[5:], safe='')}" if target.startswith("team:") else \
        f"/admin/keys/{quote(target, safe='')}"


def _keys(args: argparse.Namespace) -> int:
    if args.keys_cmd == "create":
        body = _key_body(args)
        if args.credits is not None:
            body["credits_usd"] = args.credits
        result = _call(args, "POST", "/admin/keys", body)
        if args.json:
            _print(result)
        else:
            print(f"created key {result['id']} ({result['name']})")
            print(f"  {result['key']}")
            print("Store it now: it is not shown again.")
    elif args.keys_cmd == "list":
        result = _call(args, "GET", "/admin/keys" + ("?include_revoked=true" if args.all else ""))
        print(json.dumps(result["data"], indent=2) if args.json else _keys_table(result["data"]))
    elif args.keys_cmd == "show":
        _print(_call(args, "GET", f"/admin/keys/{args.key_id}"))
    elif args.keys_cmd == "update":
        _print(_call(args, "PATCH", f"/admin/keys/{args.key_id}", _key_body(args)))
    elif args.keys_cmd == "revoke":
        result = _call(args, "DELETE", f"/admin/keys/{args.key_id}")
        print(f"revoked key {result['id']} ({result['name']})")
    return 0


def _credits(args: argparse.Namespace) -> int:
    base = _account_path(args.target)
    if args.credits_cmd == "add":
        result = _call(args, "POST", base + "/credits", {"amount_usd": args.amount, "kind": args.kind, "note": args.note})
        print(f"{result['account']}: balance ${result['balance_usd']:.4f} (available ${result['available_usd']:.4f})")
    elif args.credits_cmd == "show":
        result = _call(args, "GET", base)
        _print(result.get("credit", result))
    elif args.credits_cmd == "ledger":
        result = _call(args, "GET", base + f"/ledger?limit={args.limit}")
        if args.json:
            _print(result)
        else:
            from switchboard.accounting.usage import to_table

            print(to_table([{k: e[k] for k in ("id", "ts", "kind", "amount_usd", "request_id", "model", "note")}
                            for e in result["data"]], empty="(no ledger entries)"))
            print(f"total ${result.get('total_usd', 0):.6f}")
    return 0


def _usage(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    from switchboard.accounting.usage import to_table

    query = {"group_by": args.by}
    for name in ("key", "model", "team", "since", "until"):
        if getattr(args, name):
            query[name] = getattr(args, name)
    if args.format == "csv":
        query["format"] = "csv"
        sys.stdout.write(_call(args, "GET", "/admin/usage?" + urlencode(query)))
        return 0
    result = _call(args, "GET", "/admin/usage?" + urlencode(query))
    if args.format == "json":
        _print(result)
    else:
        print(to_table(result["data"]))
        t = result["totals"]
        print(f"\n{t['requests']} requests, {t['errors']} errors, {t['prompt_tokens']} prompt + "
              f"{t['completion_tokens']} completion tokens, ${t['cost_usd']:.6f}")
        for r in result.get("routers") or []:
            print(f"router {r['router']}: {r['requests']} requests, {r['strong']} strong ({r['strong_model']}) / "
                  f"{r['weak']} weak ({r['weak_model']}) / {r['other']} other; ${r['cost']:.6f} spent vs "
                  f"${r['cost_if_strong']:.6f} all-strong: {_saving(r['saving'], r['saving_pct'])}")
    return 0


def _saving(usd: float, share: float) -> str:
    """What routing saved against all-strong; a routing that cost more (an escalating cascade) says so."""
    if usd < 0:
        return f"cost ${-usd:.6f} more ({-share:.0%})"
    return f"saved ${usd:.6f} ({share:.0%})"


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:4000"),
                   help="the gateway (default: $SWITCHBOARD_URL or http://127.0.0.1:4000)")
    p.add_argument("--admin-key", default=os.environ.get("SWITCHBOARD_MASTER_KEY"),
                   help="the master key (default: $SWITCHBOARD_MASTER_KEY)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--team")
    # Absent unless given (SUPPRESS), so that `keys update` sends only what was given; `none` lifts a limit.
    p.add_argument("--models", type=argtypes.model_list, default=argparse.SUPPRESS,
                   help="comma-separated models this key may use, or '*' for all (the default)")
    limit = argtypes.or_none(argtypes.positive_int)
    p.add_argument("--rpm", type=limit, default=argparse.SUPPRESS, help="requests per minute, or none")
    p.add_argument("--tpm", type=limit, default=argparse.SUPPRESS, help="tokens per minute, or none")
    p.add_argument("--max-parallel", dest="max_parallel", type=limit, default=argparse.SUPPRESS,
                   help="requests in flight at once, or none")
    p.add_argument("--expires-in", type=argtypes.or_none(argtypes.positive_seconds), default=argparse.SUPPRESS,
                   metavar="SECONDS", help="seconds until the key expires, or none (never)")
    p.add_argument("--metadata", help="a JSON object")
    p.add_argument("--budget", action="append", metavar="PERIOD=USD",
                   help="hard spend cap, e.g. month=100 (with --soft-budget, replaces the key's budgets)")
    p.add_argument("--soft-budget", action="append", metavar="PERIOD=USD", help="warn-only spend cap")
    p.add_argument("--no-budgets", action="store_true", help="remove the key's budgets")
    p.add_argument("--prepaid", action=argparse.BooleanOptionalAction, default=None,
                   help="refuse requests (402) when the prepaid balance is exhausted")


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="create, list, update and revoke API keys")
    ks = keys.add_subparsers(dest="keys_cmd", metavar="ACTION", required=True)
    p = ks.add_parser("create", help="issue a new key (its secret is shown once)")
    _connection(p)
    _key_options(p)
    p.add_argument("--credits", type=argtypes.usd, help="initial prepaid credit in USD (makes the key prepaid)")
    p = ks.add_parser("list", help="list keys")
    _connection(p)
    p.add_argument("--all", action="store_true", help="include revoked keys")
    for action, help_ in (("show", "one key with balance and budgets"), ("revoke", "revoke a key")):
        p = ks.add_parser(action, help=help_)
        _connection(p)
        p.add_argument("key_id")
    p = ks.add_parser("update", help="change a key's limits, models, expiry or budgets")
    _connection(p)
    p.add_argument("key_id")
    _key_options(p)
    keys.set_defaults(func=_keys)

    credits = subparsers.add_parser("credits", help="prepaid credit: add, show, ledger")
    cs = credits.add_subparsers(dest="credits_cmd", metavar="ACTION", required=True)
    p = cs.add_parser("add", help="top up (or refund, adjust) a key or team:NAME")
    _connection(p)
    p.add_argument("target", help="a key id, or team:NAME")
    p.add_argument("amount", type=argtypes.signed_usd, help="US dollars")
    p.add_argument("--kind", default="topup", choices=("topup", "refund", "adjustment"))
    p.add_argument("--note")
    p = cs.add_parser("show", help="balance, reservations and budgets")
    _connection(p)
    p.add_argument("target")
    p = cs.add_parser("ledger", help="ledger entries, newest first")
    _connection(p)
    p.add_argument("target")
    p.add_argument("--limit", type=argtypes.positive_int, default=50)
    credits.set_defaults(func=_credits)

    p = subparsers.add_parser("usage", help="requests, tokens, cost, errors and latency by key, model, deployment, day")
    _connection(p)
    p.add_argument("--by", default="key,model,day", help="comma-separated: key, team, model, deployment, provider, day, status")
    p.add_argument("--key")
    p.add_argument("--model")
    p.add_argument("--team")
    p.add_argument("--since", type=float, help="Unix timestamp")
    p.add_argument("--until", type=float, help="Unix timestamp")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=_usage)
