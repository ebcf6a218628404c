"""From graded answers to numbers and a decision: per-model summaries, the Pareto frontier, a recommendation.

Accuracy counts every item, an errored request as wrong (an app would have had
no answer), with a Wilson 95% interval: it stays inside [0, 1] and is honest at
small n, unlike the normal approximation. Cost per 1,000 requests is the mean
cost of the answered requests times 1,000.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(model: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's row of the comparison from its per-item rows ({correct, error, ttft_ms, latency_ms, ...})."""
    n = len(rows)
    ok = [r for r in rows if not r.get("error")]
    correct = sum(1 for r in rows if r.get("correct"))
    lo, hi = wilson(correct, n)
    latencies = [r["latency_ms"] for r in ok if r.get("latency_ms") is not None]
    ttfts = [r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None]
    cost = sum(r.get("cost") or 0.0 for r in ok)
    served = Counter(r.get("served_by") or model for r in ok)
    return {
        "model": model, "n": n, "answered": len(ok), "correct": correct, "errors": n - len(ok),
        "accuracy": correct / n if n else 0.0, "ci_low": lo, "ci_high": hi,
        "ttft_p50_ms": percentile(ttfts, 50), "ttft_p95_ms": percentile(ttfts, 95),
        "latency_p50_ms": percentile(latencies, 50), "latency_p95_ms": percentile(latencies, 95),
        "prompt_tokens_mean": (sum(r.get("prompt_tokens") or 0 for r in ok) / len(ok)) if ok else 0.0,
        "completion_tokens_mean": (sum(r.get("completion_tokens") or 0 for r in ok) / len(ok)) if ok else 0.0,
        "cost_total": cost, "cost_per_1k": (cost / len(ok) * 1000.0) if ok else 0.0,
        "served_by": {name: count / len(ok) for name, count in served.most_common()} if ok else {},
    }


def pareto(summaries: list[dict[str, Any]]) -> list[str]:
    """Models no other model beats on both cost and accuracy (cheapest first)."""
    front = []
    for s in summaries:
        dominated = any(
            o is not s and o["cost_per_1k"] <= s["cost_per_1k"] and o["accuracy"] >= s["accuracy"]
            and (o["cost_per_1k"] < s["cost_per_1k"] or o["accuracy"] > s["accuracy"])
            for o in summaries)
        if not dominated:
            front.append(s)
    return [s["model"] for s in sorted(front, key=lambda s: (s["cost_per_1k"], -s["accuracy"]))]


def _mix(summary: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> str:
    """' (routes 30% to gpt-4)' for a router that served several models, else ''."""
    served = summary.get("served_by") or {}
    if len(served) < 2:
        return ""
    priced = {name: by_name[name]["cost_per_1k"] if name in by_name else 0.0 for name in served}
    strong = max(served, key=lambda name: (priced[name], served[name]))
    return f" (routes {served[strong]:.0%} to {strong})"


def recommend(summaries: list[dict[str, Any]], keep: float = 0.95) -> str:
    """A plain-language recommendation: the cheapest model that keeps `keep` of the best accuracy."""
    usable = [s for s in summaries if s["answered"] > 0]
    if not usable:
        return "No model answered any item: check the gateway and the model names."
    by_name = {s["model"]: s for s in usable}
    best = max(usable, key=lambda s: (s["accuracy"], -s["cost_per_1k"]))
    cheaper = sorted((s for s in usable if s["cost_per_1k"] < best["cost_per_1k"]), key=lambda s: s["cost_per_1k"])
    if not cheaper:
        return (f"{best['model']} is both the most accurate ({best['accuracy']:.1%}) and the cheapest "
                f"(${best['cost_per_1k']:.4f} per 1,000 requests): use it.")

    def ratios(s: dict[str, Any]) -> tuple[float, float]:
        kept = s["accuracy"] / best["accuracy"] if best["accuracy"] > 0 else 1.0
        share = s["cost_per_1k"] / best["cost_per_1k"] if best["cost_per_1k"] > 0 else 0.0
        return kept, share

    for s in cheaper:
        kept, share = ratios(s)
        if kept >= keep:
            overlap = s["ci_high"] >= best["ci_low"]
            note = ("; the difference is within the 95% confidence intervals" if overlap else
                    f"; {best['model']} is still measurably better ({best['accuracy']:.1%} vs {s['accuracy']:.1%})")
            return (f"{s['model']}{_mix(s, by_name)} keeps {kept:.0%} of {best['model']}'s accuracy "
                    f"({s['accuracy']:.1%} vs {best['accuracy']:.1%}) at {share:.0%} of its cost "
                    f"(${s['cost_per_1k']:.4f} vs ${best['cost_per_1k']:.4f} per 1,000 requests){note}. "
                    f"Recommended: {s['model']}.")
    closest = max(cheaper, key=lambda s: ratios(s)[0])
    kept, share = ratios(closest)
    return (f"Stay on {best['model']} ({best['accuracy']:.1%}): no cheaper model keeps {keep:.0%} of its accuracy. "
            f"The closest, {closest['model']}{_mix(closest, by_name)}, keeps {kept:.0%} at {share:.0%} of the cost.")
