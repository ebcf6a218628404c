"""Command line for offline smart routing: ``router train``, ``router info`` and ``route-eval``.

``register`` only declares arguments; numpy and the training code are imported when a
command runs, so wiring these commands into the main CLI costs nothing at start-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from switchboard.argtypes import fold_count, non_negative_int, share


def _load_examples(data: str, benchmark: str) -> list[Any]:
    from .dataset import DatasetError, load_benchmark, load_jsonl

    path = Path(data)
    if path.is_file():
        return load_jsonl(path)
    if not path.is_dir():
        raise DatasetError(f"--data {data}: no such file or directory")
    return load_benchmark(path, benchmark)


def _clean_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad data or a bad router file ends the command with one line on stderr, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        from .dataset import DatasetError
        from .router import RouterFormatError

        try:
            return command(args)
        except BrokenPipeError:
            raise  # the reader went away: the command line's main stops quietly
        except (DatasetError, RouterFormatError, ValueError, OSError) as exc:
            print(f"switchboard: {exc}", file=sys.stderr)
            return 2

    return run


def _check_folds(folds: int, examples: list[Any]) -> None:
    """Each fold needs a prompt to test (more folds than prompts would run fewer folds than the report's name
    says), and each fold's router enough prompts to train on."""
    from .train import MIN_EXAMPLES

    n = len(examples)
    if folds > n:
        raise ValueError(f"--folds {folds} is more than the {n} prompts to split; give at most {n}")
    smallest = n - math.ceil(n / folds)
    if smallest < MIN_EXAMPLES:
        raise ValueError(f"--folds {folds} leaves {smallest} of the {n} prompts to train a fold's router, "
                         f"which needs at least {MIN_EXAMPLES}")


def _refuse_one_outcome(examples: list[Any]) -> None:
    """Examples that all say the same thing teach a router nothing: its scores would be one constant."""
    outcomes = {(e.strong, e.weak) for e in examples}
    if len(outcomes) == 1:
        strong, weak = outcomes.pop()
        raise ValueError(f"all {len(examples)} examples have the same outcome (strong {strong:g}, weak {weak:g}); "
                         "a router learns from prompts where the outcome differs (some won by each model, or ties)")


@_clean_errors
def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train_router

    _writable(args.out)
    examples = _load_examples(args.data, args.benchmark)
    _refuse_one_outcome(examples)
    config = TrainConfig(default_share=args.default_share, seed=args.seed, kind=args.kind,
                         embedding=None if args.embedding == "none" else args.embedding,
                         structure=args.structure, options=not args.no_options)
    router = train_router(examples, name=args.name, config=config)
    router.meta["trained_on"] = Path(args.data).name if Path(args.data).is_file() else args.benchmark
    router.save(args.out)
    used = int(router.meta.get("examples", len(examples)))  # a verifier learns only from prompts with an answer
    left_out = f" ({len(examples) - used} without a 'weak_answer' left out)" if used < len(examples) else ""
    print(f"trained {router.name} on {used} prompts{left_out}; default threshold {router.default_threshold:.4f} "
          f"(~{100 * args.default_share:.0f}% strong calls on prompts like the training ones); saved to {args.out}")
    if router.quality_pgr:
        shares = ", ".join(f"{q:.0%} at {router.share_for_quality(q):.0%}" for q in (0.5, 0.8, 0.9))
        print(f"quality targets (share of the weak-to-strong gap recovered, cross-fitted) -> strong share: {shares}")
    return 0


def router_summary(router: Any) -> dict[str, Any]:
    """What an operator needs to pick a trade-off for a router file."""
    shares = sorted(router.share_thresholds)
    return {
        "name": router.name,
        "kind": type(router).__name__,
        "trained_on": router.meta.get("trained_on"),
        "examples": router.meta.get("examples"),
        "calibrated_on": router.meta.get("calibrated_on"),
        "default_threshold": round(router.default_threshold, 6),
        "shares": [{"strong_share": s, "threshold": round(router.share_thresholds[s], 6),
                    "pgr": None if s not in router.quality_pgr else round(router.quality_pgr[s], 4)} for s in shares],
        "quality_targets": {f"{q:g}": round(router.share_for_quality(q), 4) for q in (0.5, 0.8, 0.9, 0.95)}
        if router.quality_pgr else None,
    }


@_clean_errors
def _cmd_info(args: argparse.Namespace) -> int:
    from .router import load_router

    info = router_summary(load_router(args.router))
    if args.json:
        print(json.dumps(info, separators=(",", ":")))
        return 0
    print(f"{info['name']} ({info['kind']}): trained on {info['trained_on']}, {info['examples']} examples; "
          f"default threshold {info['default_threshold']:.4f}; shares calibrated on {info['calibrated_on']}")
    print(f"{'strong share':>12} {'threshold':>10} {'PGR':>6}")
    for row in info["shares"]:
        pgr = "n/a" if row["pgr"] is None else f"{row['pgr']:.3f}"
        print(f"{row['strong_share']:>12.0%} {row['threshold']:>10.4f} {pgr:>6}")
    if info["quality_targets"]:
        print("quality target -> strong share: " +
              ", ".join(f"{q} -> {share:.0%}" for q, share in info["quality_targets"].items()))
    else:
        print("no quality curve stored (a file from before quality curves): retrain to use quality_target")
    return 0


@_clean_errors
def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import cross_validate, evaluate_router

    if args.plot:
        args.plot = _writable(args.plot if os.path.splitext(args.plot)[1] else args.plot + ".png")
    examples = _load_examples(args.data, args.benchmark)
    name = args.benchmark if not Path(args.data).is_file() else Path(args.data).stem
    if args.router:
        from .router import load_router

        report = evaluate_router(load_router(args.router), examples, name, seed=args.seed)
    else:
        from .train import TrainConfig, train_router, train_verifier

        _check_folds(args.folds, examples)
        # Routers trained per fold are scored and dropped: no stored quality curve needed.
        config = TrainConfig(seed=args.seed, kind=args.kind,
                             embedding=None if args.embedding == "none" else args.embedding,
                             structure=args.structure, options=not args.no_options, quality_folds=0)
        groups = {e.group for e in examples}
        report = cross_validate(
            examples, name, args.folds, lambda ex: train_router(ex, config=config), seed=args.seed,
            leave_group_out=args.benchmark == "mmlu" and len(groups) >= args.folds,
            verifier=lambda ex: train_verifier(ex, config=TrainConfig(seed=args.seed, quality_folds=0)),
        )
    written, failure = None, None
    if args.plot:
        from .plot import plot_report

        try:  # an evaluation can take minutes: a plot that cannot be written must not lose its results
            written = plot_report(report, args.plot)
        except (ValueError, OSError) as exc:
            failure = exc
    print(report.to_text())
    if written:
        print(f"plot written to {written}")
    if args.json:
        print(json.dumps(report.to_json(), separators=(",", ":")))
    if failure is not None:
        print(f"switchboard: plot not written to {args.plot}: {failure}", file=sys.stderr)
        return 2
    return 0


def _writable(path: str) -> str:
    """``path``, checked before minutes of work go into what will be written there: its folder is made (a file
    in the way is refused), and it must not be a folder itself."""
    folder = next((p for p in Path(path).parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if Path(path).is_dir():
        raise ValueError(f"{path} is a directory; give a file name")
    return path


_KINDS = {
    "gain": "two heads, P(strong correct) - P(weak correct) (default)",
    "linear": "one soft-label head",
    "verifier": "the cascade's answer verifier, trained on prompts with the weak model's answer",
}


def _add_model_options(parser: argparse.ArgumentParser, kinds: tuple[str, ...] = ("gain", "linear")) -> None:
    parser.add_argument("--kind", default="gain", choices=kinds, help="; ".join(f"{k}: {_KINDS[k]}" for k in kinds))
    parser.add_argument("--embedding", default="none",
                        help="static embedding table added to the gain router's features, e.g. "
                             "minilm-l6-static64 (see docs/routing.md), or 'none' (default)")
    parser.add_argument("--structure", action="store_true",
                        help="add multiple-choice / word-problem structure features (gain only)")
    parser.add_argument("--no-options", action="store_true",
                        help="leave out the option-geometry features of multiple-choice prompts (gain only)")


def register(subparsers: Any) -> None:
    """Add ``router`` (with ``train``) and ``route-eval`` to an argparse subparsers object."""
    router = subparsers.add_parser("router", help="train and manage smart routers")
    router_sub = router.add_subparsers(dest="router_command", required=True)
    train = router_sub.add_parser("train", help="train a router from recorded strong/weak results")
    train.add_argument("--data", required=True,
                       help="RouteLLM data directory, or a JSONL file of {prompt, scores|winner} (docs/routing.md)")
    train.add_argument("--benchmark", default="all", choices=["mmlu", "gsm8k", "mt-bench", "all"],
                       help="benchmark(s) to train on when --data is a directory (default: all present)")
    train.add_argument("--out", required=True, help="where to write the router (.npz)")
    train.add_argument("--name", default=None,
                       help="router name stored in the file (default: gain-tfidf, linear-tfidf or answer-verifier)")
    _add_model_options(train, ("gain", "linear", "verifier"))
    train.add_argument("--default-share", type=share, default=0.5,
                       help="strong-call share on the training prompts that the stored default threshold gives")
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.set_defaults(func=_cmd_train)
    info = router_sub.add_parser("info", help="show a router file's thresholds per strong share and quality curve")
    info.add_argument("router", nargs="?", default=None, help="router file (default: the shipped router)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_cmd_info)

    ev = subparsers.add_parser("route-eval", help="evaluate routers offline: APGR, CPT, PGR curve, latency")
    ev.add_argument("--data", required=True, help="RouteLLM data directory, or a JSONL file in our format")
    ev.add_argument("--benchmark", default="mmlu", choices=["mmlu", "gsm8k", "mt-bench"])
    how = ev.add_mutually_exclusive_group(required=True)
    how.add_argument("--folds", type=fold_count,
                     help="train and test by K-fold cross-validation (K from 2 to the number of prompts)")
    how.add_argument("--router", help="test a trained router file as is")
    ev.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    ev.add_argument("--plot", help="write the quality-vs-strong-share curves to this PNG")
    ev.add_argument("--seed", type=non_negative_int, default=0)
    _add_model_options(ev)
    ev.set_defaults(func=_cmd_eval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard-smart-routing")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
