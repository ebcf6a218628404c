"""`switchboard shadow-report`: what the shadow pairs say about each candidate.

Per (model, candidate): how often the candidate agrees with the primary answer
(a grader with the primary answer as `expected`: `exact` by default, `numeric`
for math...), or, with `--judge MODEL`, which answer an LLM judge prefers;
latency p50/p95 of both; cost per 1,000 requests of both; what the shadow
traffic cost in total. `--export FILE` writes the pairs as router training
data (docs/routing.md): `{"prompt", "scores": {"strong", "weak"}}` from
agreement (the strong side's answer is the reference, scored 1; the weak side
scores 1 when it agrees), or `{"prompt", "winner"}` from the judge.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard.evals.analysis import percentile
from switchboard.evals.datasets import Item
from switchboard.evals.graders import make_grader

PAIRWISE_PROMPT = """Two AI assistants answered the same request. Which answer is better?

Request:
{question}

Answer A:
{a}

Answer B:
{b}

Judge correctness first, then completeness and clarity. End with one line, exactly
`WINNER: A`, `WINNER: B` or `WINNER: TIE`."""

_WINNER = re.compile(r"WINNER\s*:\s*\**\s*(A|B|TIE)\b", re.IGNORECASE)

# (model, messages) -> (text, cost)
JudgeCall = Callable[[str, list[dict[str, Any]]], Awaitable[tuple[str, float]]]


def parse_winner(text: str) -> str | None:
    found = _WINNER.findall(text)
    return found[-1].upper() if found else None


async def judge_pair(call: JudgeCall, model: str, pair: dict[str, Any]) -> str | None:
    """'primary', 'candidate' or 'tie'; the answers' order is swapped for half the prompts to cancel position bias."""
    swap = int(hashlib.sha256(pair["prompt"].encode()).hexdigest(), 16) % 2 == 1
    a, b = (pair["candidate_response"], pair["primary_response"]) if swap else (pair["primary_response"],
                                                                                  pair["candidate_response"])
    text, _ = await call(model, [{"role": "user", "content": PAIRWISE_PROMPT.format(question=pair["prompt"], a=a, b=b)}])
    winner = parse_winner(text)
    if winner is None:
        return None
    if winner == "TIE":
        return "tie"
    return ("candidate" if winner == "A" else "primary") if swap else ("primary" if winner == "A" else "candidate")


async def analyse(pairs: list[dict[str, Any]], grader_spec: dict[str, Any], judge: JudgeCall | None = None,
                  judge_model: str | None = None) -> dict[str, Any]:
    """Grade (or judge) every pair; returns {"groups": [...], "pairs": [...], "shadow_spend_usd"}."""
    grader = make_grader(grader_spec)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for pair in pairs:
        groups.setdefault((pair["model"], pair["candidate"]), []).append(pair)
        if pair.get("error") or pair.get("candidate_response") is None:
            pair["agree"] = None
            continue
        item = Item(id=str(pair["id"]), messages=[{"role": "user", "content": pair["prompt"]}],
                    expected=pair["primary_response"])
        try:
            pair["agree"] = (await grader.grade(pair["candidate_response"], item)).correct
        except ValueError:  # e.g. numeric grader, primary answer without a number
            pair["agree"] = None
        if judge is not None and judge_model:
            pair["preferred"] = await judge_pair(judge, judge_model, pair)
    out = []
    for (model, candidate), rows in groups.items():
        ok = [r for r in rows if not r.get("error")]
        graded = [r for r in ok if r.get("agree") is not None]
        judged = [r for r in ok if r.get("preferred")]
        out.append({
            "model": model, "candidate": candidate, "pairs": len(rows), "errors": len(rows) - len(ok),
            "agreement": (sum(1 for r in graded if r["agree"]) / len(graded)) if graded else None,
            "judged": len(judged),
            "candidate_preferred": (sum(1 for r in judged if r["preferred"] == "candidate") / len(judged)) if judged else None,
            "primary_preferred": (sum(1 for r in judged if r["preferred"] == "primary") / len(judged)) if judged else None,
            "ties": (sum(1 for r in judged if r["preferred"] == "tie") / len(judged)) if judged else None,
            "primary_p50_ms": percentile([r["primary_ms"] for r in ok if r.get("primary_ms") is not None], 50),
            "primary_p95_ms": percentile([r["primary_ms"] for r in ok if r.get("primary_ms") is not None], 95),
            "candidate_p50_ms": percentile([r["candidate_ms"] for r in ok if r.get("candidate_ms") is not None], 50),
            "candidate_p95_ms": percentile([r["candidate_ms"] for r in ok if r.get("candidate_ms") is not None], 95),
            "primary_cost_per_1k": (sum(r["primary_cost"] or 0 for r in ok) / len(ok) * 1000) if ok else 0.0,
            "candidate_cost_per_1k": (sum(r["candidate_cost"] or 0 for r in ok) / len(ok) * 1000) if ok else 0.0,
            "shadow_spend_usd": sum(r["candidate_cost"] or 0 for r in rows),
        })
    return {"grader": grader_spec, "judge": judge_model, "groups": out, "pairs": pairs,
            "shadow_spend_usd": sum(p["candidate_cost"] or 0 for p in pairs)}


def training_rows(pairs: list[dict[str, Any]], strong: str = "primary") -> list[dict[str, Any]]:
    """Router training examples from judged or graded pairs (docs/routing.md formats)."""
    rows = []
    for pair in pairs:
        if pair.get("error"):
            continue
        group = f"shadow:{pair['model']}>{pair['candidate']}"
        preferred = pair.get("preferred")
        if preferred:
            if preferred == "tie":
                winner = "tie"
            else:
                winner = "strong" if preferred == strong else "weak"
            rows.append({"prompt": pair["prompt"], "winner": winner, "group": group})
        elif pair.get("agree") is not None:
            rows.append({"prompt": pair["prompt"], "scores": {"strong": 1.0, "weak": 1.0 if pair["agree"] else 0.0},
                         "group": group})
    return rows


def format_report(report: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    header = ("model", "candidate", "pairs", "errors", "agreement", "cand. preferred", "p50 ms (prim/cand)",
              "p95 ms (prim/cand)", "$/1k (prim/cand)", "shadow $")
    table = [header]
    for g in report["groups"]:
        table.append((g["model"], g["candidate"], str(g["pairs"]), str(g["errors"]), pct(g["agreement"]),
                      pct(g["candidate_preferred"]), f"{ms(g['primary_p50_ms'])}/{ms(g['candidate_p50_ms'])}",
                      f"{ms(g['primary_p95_ms'])}/{ms(g['candidate_p95_ms'])}",
                      f"{g['primary_cost_per_1k']:.4f}/{g['candidate_cost_per_1k']:.4f}", f"{g['shadow_spend_usd']:.6f}"))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"total shadow spend: ${report['shadow_spend_usd']:.6f} (not charged to any caller's key)")
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in report.items() if k != "pairs"}, separators=(",", ":"))
