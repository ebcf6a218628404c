"""Offline evaluation of routers: cross-validation, held-out-group splits, latency, reports.

Every learned score reported here is out-of-fold: the router that scores a prompt was
trained without it (and, for group splits, without any prompt of its group).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dataset import Example
from .metrics import RouterMetrics, evaluate_scores, oracle_scores
from .router import RandomRouter, ScoringRouter, VerifierRouter

Trainer = Callable[[Sequence[Example]], ScoringRouter]


@dataclass
class RouterResult:
    """One router's metrics on one dataset; ``decision_ms_p50`` is None for the oracle,
    which is not a real router (it reads the graded answers)."""

    name: str
    metrics: RouterMetrics
    decision_ms_p50: float | None
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "apgr": round(self.metrics.apgr, 4),
            "cpt50": round(100 * self.metrics.cpt50, 2),
            "cpt80": round(100 * self.metrics.cpt80, 2),
            "decision_ms_p50": None if self.decision_ms_p50 is None else round(self.decision_ms_p50, 4),
            "pgr_curve": [[round(100 * c, 1), round(p, 4)] for c, p in self.metrics.curve_points(11)],
        }


@dataclass
class Report:
    benchmark: str
    n_prompts: int
    strong_quality: float
    weak_quality: float
    results: list[RouterResult] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "benchmark": self.benchmark,
            "n_prompts": self.n_prompts,
            "strong_quality": round(self.strong_quality, 4),
            "weak_quality": round(self.weak_quality, 4),
            "routers": {r.name: r.to_json() for r in self.results},
        }

    def to_text(self) -> str:
        lines = [
            f"benchmark {self.benchmark}: {self.n_prompts} prompts, strong quality {self.strong_quality:.3f}, "
            f"weak quality {self.weak_quality:.3f}",
            f"{'router':<34} {'APGR':>6} {'CPT50%':>7} {'CPT80%':>7} {'p50 ms':>8}",
        ]
        for r in self.results:
            ms = "n/a" if r.decision_ms_p50 is None else f"{r.decision_ms_p50:.3f}"
            lines.append(f"{r.name:<34} {r.metrics.apgr:>6.3f} {100 * r.metrics.cpt50:>6.1f}% "
                         f"{100 * r.metrics.cpt80:>6.1f}% {ms:>8}")
        lines.append("PGR curve (strong share% -> PGR):")
        for r in self.results:
            pts = " ".join(f"{100 * c:.0f}:{p:.2f}" for c, p in r.metrics.curve_points(11))
            lines.append(f"  {r.name:<32} {pts}")
        for r in self.results:
            if r.note:
                lines.append(f"note [{r.name}]: {r.note}")
        return "\n".join(lines)


def decision_latency_ms(router: ScoringRouter, items: Sequence[str] | Sequence[Example], limit: int = 500) -> float:
    """Median wall time of one decision, in milliseconds, on up to ``limit`` prompts (or
    examples: an answer verifier's decision reads the weak answer too)."""
    sample = list(items[:limit])
    if not sample:
        return 0.0
    score: Callable[[Any], float] = router.score_example if isinstance(sample[0], Example) else router.score
    score(sample[0])  # warm caches
    times = []
    for item in sample:
        t0 = time.perf_counter_ns()
        score(item)
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def kfold_assignments(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number of each of ``n`` examples, shuffled, folds as equal as possible."""
    if folds < 2:
        raise ValueError("need at least 2 folds")
    if folds > n:
        raise ValueError(f"cannot split {n} examples into {folds} folds")
    return np.random.default_rng(seed).permutation(n) % folds


def group_assignments(groups: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """Fold number of each example such that every group lies wholly in one fold: each
    prompt is scored by a router that never saw its group (e.g. MMLU subject)."""
    names = sorted(set(groups))
    if len(names) < folds:
        raise ValueError(f"{len(names)} groups cannot fill {folds} folds")
    perm = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[g]: i % folds for i, g in enumerate(perm)}
    return np.array([fold_of[g] for g in groups])


def out_of_fold_scores(examples: Sequence[Example], fold: np.ndarray, trainer: Trainer) -> tuple[np.ndarray, float]:
    """Score each example with a router trained on the other folds; also return the
    median decision latency measured on the test prompts."""
    scores = np.zeros(len(examples))
    latencies = []
    for k in np.unique(fold):
        train_rows = np.flatnonzero(fold != k)
        test_rows = np.flatnonzero(fold == k)
        router = trainer([examples[i] for i in train_rows])
        test = [examples[i] for i in test_rows]
        scores[test_rows] = router.score_examples(test)
        latencies.append(decision_latency_ms(router, test, limit=200))
    return scores, float(np.median(latencies))


def baseline_results(examples: Sequence[Example], seed: int = 0) -> list[RouterResult]:
    """The random router and the oracle (upper bound, evaluation only)."""
    strong = [e.strong for e in examples]
    weak = [e.weak for e in examples]
    prompts = [e.prompt for e in examples]
    rnd = RandomRouter(seed)
    return [
        RouterResult("random", evaluate_scores(rnd.score_many(prompts), strong, weak),
                     decision_latency_ms(rnd, prompts)),
        RouterResult("oracle", evaluate_scores(oracle_scores(strong, weak), strong, weak), None,
                     "upper bound; reads the graded answers"),
    ]


def new_report(benchmark: str, examples: Sequence[Example]) -> Report:
    n = len(examples)
    return Report(benchmark, n, sum(e.strong for e in examples) / n, sum(e.weak for e in examples) / n)


def evaluate_router(router: ScoringRouter, examples: Sequence[Example], benchmark: str, seed: int = 0) -> Report:
    """Test a trained router as is, next to the random and oracle baselines."""
    report = new_report(benchmark, examples)
    metrics = evaluate_scores(router.score_examples(examples), [e.strong for e in examples], [e.weak for e in examples])
    report.results.append(RouterResult(router.name, metrics, decision_latency_ms(router, examples), _note(router)))
    report.results.extend(baseline_results(examples, seed))
    return report


VERIFIER_NOTE = ("cascade: reads the weak model's answer, so the weak model is called on every prompt "
                 "(cost = all weak calls + the strong share)")


def _note(router: ScoringRouter) -> str:
    return VERIFIER_NOTE if isinstance(router, VerifierRouter) else ""


def cross_validate(examples: Sequence[Example], benchmark: str, folds: int, trainer: Trainer, seed: int = 0,
                   leave_group_out: bool = False, name: str = "learned",
                   verifier: Trainer | None = None) -> Report:
    """K-fold cross-validation of a trainer; with ``leave_group_out`` also the split that
    holds out whole groups (subjects), reported alongside under ``<name>-leave-subject-out``.
    With ``verifier`` (and examples that carry the weak answer) the cascade's answer
    verifier is cross-validated on the same folds, as ``cascade-verifier-<K>fold``."""
    report = new_report(benchmark, examples)
    strong = [e.strong for e in examples]
    weak = [e.weak for e in examples]
    fold = kfold_assignments(len(examples), folds, seed)
    scores, ms = out_of_fold_scores(examples, fold, trainer)
    report.results.append(RouterResult(f"{name}-{folds}fold", evaluate_scores(scores, strong, weak), ms))
    if verifier is not None and all(e.weak_answer is not None for e in examples):
        scores, ms = out_of_fold_scores(examples, fold, verifier)
        report.results.append(RouterResult(f"cascade-verifier-{folds}fold", evaluate_scores(scores, strong, weak), ms,
                                           VERIFIER_NOTE))
    if leave_group_out:
        fold = group_assignments([e.group for e in examples], folds, seed)
        scores, ms = out_of_fold_scores(examples, fold, trainer)
        report.results.append(RouterResult(f"{name}-leave-subject-out", evaluate_scores(scores, strong, weak), ms,
                                           f"{folds} folds of whole subjects; no test subject seen in training"))
    report.results.extend(baseline_results(examples, seed))
    return report
