"""The `compare` and `shadow-report` verbs (added to the `switchboard` command by `register`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from switchboard import argtypes


def _quiet_http_logs() -> None:
    """The HTTP client logs every request at INFO: thousands of lines that would bury the progress bar."""
    import logging

    for name in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _fail(message: str) -> int:
    print(f"switchboard: {message}", file=sys.stderr)
    return 2


def _cmd_compare(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from switchboard.evals.compare import CompareSettings, GatewayUnreachable, UnknownModel, format_table, run_compare
    from switchboard.evals.datasets import DatasetError, load_dataset
    from switchboard.evals.graders import GraderError, parse_spec

    _quiet_http_logs()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        return _fail("--models needs at least one model name")
    if len(set(models)) != len(models):
        return _fail("--models names a model twice")
    try:
        items = load_dataset(args.data, args.format, args.limit)
        grader = parse_spec(args.grader) if args.grader else None
    except (DatasetError, GraderError) as exc:
        return _fail(str(exc))
    settings = CompareSettings(
        models=models, items=items, url=args.url, api_key=args.api_key or "", out=Path(args.out), grader=grader,
        concurrency=args.concurrency, temperature=None if args.temperature < 0 else args.temperature,
        max_tokens=args.max_tokens, stream=not args.no_stream, timeout=args.timeout, retries=args.retries,
        keep=args.keep, dataset_name=os.path.basename(args.data), progress=not args.quiet)
    try:
        result = asyncio.run(run_compare(settings))
    except (GraderError, GatewayUnreachable, UnknownModel) as exc:
        return _fail(str(exc))
    print(format_table(result))
    print()
    print(result["recommendation"])
    if result["cost_basis"] != "charged":
        print(f"\ncost: {result['cost_basis']}")
    print(f"\n{result['requests_made']} requests made, {result['requests_cached']} answered from the cache; "
          f"results in {settings.out / 'results.json'}, report in {settings.out / 'report.html'}")
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "items"}, separators=(",", ":")))
    return 0


def _shadow_db(args: argparse.Namespace) -> str:
    if args.db:
        return args.db
    if args.config:
        from switchboard.config import load_config

        config = load_config(args.config)
        shadow = config.raw.get("shadow") if isinstance(config.raw.get("shadow"), dict) else {}
        return str(shadow.get("db") or config.storage.sqlite_path)
    return "switchboard.db"


def _cmd_shadow_report(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from switchboard.config import ConfigError
    from switchboard.evals.graders import GraderError, parse_spec
    from switchboard.evals.shadow import read_pairs
    from switchboard.evals.shadow_report import analyse, format_report, to_json, training_rows

    _quiet_http_logs()
    try:
        db = _shadow_db(args)
        spec = parse_spec(args.grader)
    except (ConfigError, GraderError) as exc:
        return _fail(str(exc))
    if not os.path.exists(db):
        return _fail(f"no shadow pairs database at {db}")
    pairs = read_pairs(db, args.model, args.candidate)
    if not pairs:
        print(f"no shadow pairs in {db} yet", file=sys.stderr)

    async def run() -> dict[str, Any]:
        client = None
        if args.judge:
            from switchboard.evals.compare import GatewayClient

            client = GatewayClient(args.url, args.api_key or "", args.timeout, 2)

        async def judge(model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
            assert client is not None
            got = await client.ask(model, messages, {"temperature": 0}, stream=False)
            if got.error:
                raise GraderError(f"the judge {model} failed: {got.error}")
            return got.text, got.cost

        try:
            if client is not None:  # a typo is one line, not a failed judge per pair
                await client.load_prices()
                await client.check_models([args.judge])
            return await analyse(pairs, spec, judge if client is not None else None, args.judge)
        finally:
            if client is not None:
                await client.close()

    from switchboard.evals.compare import GatewayUnreachable, UnknownModel

    try:
        report = asyncio.run(run())
    except (GraderError, GatewayUnreachable, UnknownModel) as exc:
        return _fail(str(exc))
    print(format_report(report))
    if args.export:
        rows = training_rows(report["pairs"], args.strong)
        with open(args.export, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{len(rows)} training examples written to {args.export} (switchboard router train --data {args.export})")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(to_json(report) + "\n")
        print(f"report written to {args.out}")
    if args.json:
        print(to_json(report))
    return 0


def env_url() -> str:
    return os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:4000")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("compare", help="compare models on a dataset through the gateway: accuracy, latency, cost")
    p.add_argument("--models", required=True, help="comma-separated model names as the gateway knows them, e.g. A,B,auto")
    p.add_argument("--data", required=True, help="JSONL dataset: {messages|prompt, expected, grader?} or GSM8K {question, answer}")
    p.add_argument("--format", default="auto", choices=["auto", "jsonl", "gsm8k"], help="dataset layout (default: per line)")
    p.add_argument("--grader", help="default grader: exact, regex:pattern=..., numeric[:match=digits], choice, "
                                    "json[:schema=FILE], judge:model=M,rubric=TEXT (default: numeric for GSM8K, else exact)")
    p.add_argument("--concurrency", type=argtypes.positive_int, default=16, help="requests in flight (default 16)")
    p.add_argument("--out", default="compare-out", help="output directory: cache, results.json, report.html")
    p.add_argument("--limit", type=argtypes.positive_int, help="only the first N items")
    p.add_argument("--url", default=env_url(), help="gateway URL (default: $SWITCHBOARD_URL or http://127.0.0.1:4000)")
    p.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"), help="gateway key (default: $SWITCHBOARD_API_KEY)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature sent (negative: send none)")
    p.add_argument("--max-tokens", type=argtypes.positive_int, help="max_tokens sent with every request")
    p.add_argument("--no-stream", action="store_true", help="non-streamed requests (TTFT then equals total latency)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--retries", type=argtypes.non_negative_int, default=2, help="SDK retries of a failed request")
    p.add_argument("--keep", type=argtypes.share, default=0.95,
                   help="share of the best accuracy a cheaper model must keep to be recommended")
    p.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)

    p = subparsers.add_parser("shadow-report", help="compare primary and candidate answers from shadow traffic")
    p.add_argument("--db", help="SQLite file holding shadow_pairs (default: from --config, else ./switchboard.db)")
    p.add_argument("--config", "-c", help="gateway config: read the shadow database location from it")
    p.add_argument("--model", help="only pairs of this primary model")
    p.add_argument("--candidate", help="only pairs of this candidate")
    p.add_argument("--grader", default="exact", help="agreement grader, with the primary answer as expected "
                                                     "(default exact; numeric for math...)")
    p.add_argument("--judge", metavar="MODEL", help="also ask this model (through the gateway) which answer is better")
    p.add_argument("--url", default=env_url(), help="gateway URL for --judge")
    p.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"))
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--export", metavar="FILE", help="write router training JSONL ({prompt, scores} or {prompt, winner})")
    p.add_argument("--strong", default="primary", choices=["primary", "candidate"],
                   help="which side is the strong model in the exported data (default: primary)")
    p.add_argument("--out", metavar="FILE", help="also write the report as JSON (e.g. reports/shadow-report.json, "
                                                 "listed by the dashboard)")
    p.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    p.set_defaults(func=_cmd_shadow_report)
