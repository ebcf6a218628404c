"""The `switchboard` command line: verbs that read like sentences.

    switchboard serve [--config FILE]
    switchboard mock-upstream --port N [--latency S --ttft S --tps N --reply TEXT --fault ...]
    switchboard logs [--limit N]
    switchboard router train ... / switchboard route-eval ...

Each verb imports what it needs only when it runs, so `switchboard --help`
stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from switchboard import argtypes

# Modules that add their own verbs with `register(subparsers)`.
PLUGIN_COMMANDS = ("switchboard.routing.smart.cli", "switchboard.evals.cli", "switchboard.accounting.cli")


def _serve(args: argparse.Namespace) -> int:
    from switchboard.config import ConfigError
    from switchboard.serve import run, serve

    config = args.config or os.environ.get("SWITCHBOARD_CONFIG")
    try:
        if args.workers > 1:
            from switchboard.prefork import serve_workers

            return serve_workers(config, args.workers, args.host, args.port, ready_file=args.ready_file)
        run(serve(config, args.host, args.port, ready_file=args.ready_file))
    except ConfigError as exc:
        print(f"switchboard: config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"switchboard: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _mock_upstream(args: argparse.Namespace) -> int:
    import orjson

    from switchboard.serve import run
    from switchboard.testing.mock_upstream import Fault, ModelBehaviour, MockUpstream, serve_forever

    faults = []
    if args.error_rate:
        faults.append(Fault(kind="status", rate=args.error_rate, status=args.error_status, retry_after=args.retry_after))
    if args.hang_rate:
        faults.append(Fault(kind="hang", rate=args.hang_rate))
    if args.drop_rate:
        faults.append(Fault(kind="drop", rate=args.drop_rate))
    if args.cut_after is not None:
        faults.append(Fault(kind="cut", rate=args.cut_rate, after_chunks=args.cut_after))
    default = ModelBehaviour(reply=args.reply, latency=args.latency, ttft=args.ttft, tokens_per_second=args.tps,
                             faults=faults)
    behaviours = {}
    if args.models:
        import yaml

        with open(args.models, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        behaviours = {name: ModelBehaviour.from_dict(settings or {}) for name, settings in raw.items()}
    for item in args.model or []:
        name, _, settings = item.partition("=")
        behaviours[name] = ModelBehaviour.from_dict(orjson.loads(settings) if settings else {})
    run(serve_forever(MockUpstream(behaviours, default, seed=args.seed), args.host, args.port))
    return 0


def _logs(args: argparse.Namespace) -> int:
    path = args.db
    if args.config:
        from switchboard.config import load_config

        storage = load_config(args.config).storage
        if storage.database_url is not None:  # the gateway logs there, whatever sqlite_path says
            rows = _recent_from_postgres(storage.database_url.reveal(), args.limit, model=args.model,
                                         status=args.status)
            if rows is None:
                return 1
            return _print_logs(rows, args.json)
        path = storage.sqlite_path
    if not os.path.exists(path):
        print(f"no request log at {path}", file=sys.stderr)
        return 1
    import sqlite3
    from urllib.parse import quote

    from switchboard.storage.sqlite import query_recent

    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)  # a "#" or "?" in the path stays in it
    conn.row_factory = sqlite3.Row
    try:
        rows = query_recent(conn, args.limit, model=args.model, status=args.status)
    except sqlite3.Error as exc:
        print(f"switchboard: {path} is not a request log ({exc})", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return _print_logs(rows, args.json)


def _recent_from_postgres(url: str, limit: int, **filters: Any) -> list[dict[str, Any]] | None:
    """The newest request log rows in the Postgres database at `url`, or None (said on stderr) if it cannot."""
    import asyncio

    from switchboard.storage.postgres import PostgresStorage, split_schema

    async def read() -> list[dict[str, Any]]:
        storage = PostgresStorage(url, min_size=1, max_size=1)
        await storage.connect()  # never migrates: reading the log changes nothing
        try:
            return await storage.recent_requests(limit, **filters)
        finally:
            await storage.close()

    where = split_schema(url)[0].rpartition("@")[2]  # never the password
    try:
        return asyncio.run(read())
    except Exception as exc:  # asyncpg's errors, and OSError: not reachable
        print(f"switchboard: cannot read the request log in the Postgres database at {where}: "
              f"{' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return None


def _print_logs(rows: list[dict[str, Any]], as_json: bool) -> int:
    from datetime import datetime
    if as_json:
        import orjson

        for row in rows:
            print(orjson.dumps(row).decode())
        return 0
    from switchboard.accounting.usage import to_table

    print(to_table([{
        "time": datetime.fromtimestamp(r["ts"]).strftime("%H:%M:%S"), "request id": r["request_id"],
        "key": r["key_id"], "model": r["model_requested"], "served by": r["deployment"], "status": str(r["status"]),
        "in": str(r["prompt_tokens"]), "out": str(r["completion_tokens"]), "cost $": f"{r['cost']:.6f}",
        "ms": f"{r['latency_ms']:.1f}", "ttft ms": None if r["ttft_ms"] is None else f"{r['ttft_ms']:.1f}",
    } for r in rows], empty="(no requests logged)"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="A self-hosted LLM gateway.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--config", "-c", help="YAML config file (default: $SWITCHBOARD_CONFIG, else discover providers from the environment)")
    p.add_argument("--host", help="address to listen on (overrides the config)")
    p.add_argument("--port", type=argtypes.port, help="port to listen on (overrides the config; 0 picks a free one)")
    p.add_argument("--workers", "-w", type=int, default=1,
                   help="worker processes sharing the port (one per core; rate limits are shared by the workers)")
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    p.set_defaults(func=_serve)

    p = sub.add_parser("mock-upstream", help="run the mock upstream (simulated providers with fault injection)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=argtypes.port, default=9000)
    p.add_argument("--latency", type=float, default=0.0, help="seconds before a non-streamed answer")
    p.add_argument("--ttft", type=float, default=None, help="seconds to the first token (streams)")
    p.add_argument("--tps", type=float, default=None, help="tokens per second (default: instant)")
    p.add_argument("--reply", default=None, help="fixed reply text")
    p.add_argument("--error-status", type=int, default=500)
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered with --error-status")
    p.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds sent with injected errors")
    p.add_argument("--hang-rate", type=float, default=0.0, help="share of requests that never answer")
    p.add_argument("--drop-rate", type=float, default=0.0, help="share of connections dropped before the first byte")
    p.add_argument("--cut-after", type=int, default=None, help="cut streams after this many chunks")
    p.add_argument("--cut-rate", type=float, default=1.0, help="share of streams cut (with --cut-after)")
    p.add_argument("--models", help="YAML file: model name -> behaviour settings")
    p.add_argument("--model", action="append", metavar="NAME=JSON", help="behaviour of one model, e.g. 'm={\"latency\":0.1}'")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=_mock_upstream)

    p = sub.add_parser("logs", help="show recent requests from the request log")
    p.add_argument("--db", default="switchboard.db", help="SQLite file (default: ./switchboard.db)")
    p.add_argument("--config", "-c", help="read the database location from this config (SQLite or Postgres)")
    p.add_argument("--limit", "-n", type=argtypes.positive_int, default=20)
    p.add_argument("--model")
    p.add_argument("--status", type=int)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_logs)

    for module in PLUGIN_COMMANDS:
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError:
            continue
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from switchboard.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, as other command-line tools do, and keep the final flush of
        # stdout at exit from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, a shell's status for a pipe's writer that was cut off
    except ConfigError as exc:
        print(f"switchboard: config error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a verb's own errors are one line; anything else too, unless -v asks for the trace
        if args.verbose:
            raise
        print(f"switchboard: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
