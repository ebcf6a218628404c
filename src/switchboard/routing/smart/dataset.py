"""Routing examples and their loaders.

A routing example is a prompt plus the quality each of the two models reached on it.
Everything downstream (training, metrics, calibration) sees only this one shape, so a
new data source is just one more loader here.

Supported sources:

* the RouteLLM evaluation layout (``mmlu/*.csv``, ``gsm8k/responses.csv``,
  ``mt_bench/question.jsonl`` + ``mt_bench/judgements.jsonl``), with the prompts in each
  benchmark's ``contaminated_prompts.jsonl`` (field ``eval_prompt``) dropped;
* our own JSONL, one object per line, either with per-model scores in [0, 1]::

      {"prompt": "...", "scores": {"strong": 1, "weak": 0}}

  or with a pairwise preference::

      {"prompt": "...", "winner": "strong" | "weak" | "tie"}

  Optional ``"group"`` (e.g. a topic) is used for leave-group-out evaluation; optional
  ``"weak_answer"`` (the weak model's answer) trains the cascade's answer verifier.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STRONG_MODEL = "gpt-4-1106-preview"
WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")


class DatasetError(ValueError):
    """The data on disk does not have the shape a loader expects."""


@dataclass(frozen=True, slots=True)
class Example:
    """One prompt with the quality of the strong and the weak model's answer, in [0, 1].

    ``group`` names the prompt's family (an MMLU subject, a benchmark) so evaluation can
    hold out whole families and measure generalisation to unseen topics. ``weak_answer``
    is the weak model's answer where the data has it: prompt-only routers never read it;
    the cascade's answer verifier is trained and evaluated on it.
    """

    prompt: str
    strong: float
    weak: float
    group: str = ""
    weak_answer: str | None = None

    @property
    def label(self) -> float:
        """Training target: P(strong wins) + P(tie) / 2, i.e. RouteLLM's strong win rate.

        Ranking prompts by this value ranks them by the expected quality gained by calling
        the strong model, which is what the PGR curve rewards.
        """
        return 0.5 + 0.5 * max(-1.0, min(1.0, self.strong - self.weak))


def _read_contaminated(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with path.open(encoding="utf-8") as fh:
        return {json.loads(line)["eval_prompt"] for line in fh if line.strip()}


def _truth(value: str) -> float:
    v = value.strip().lower()
    if v in ("true", "1", "1.0"):
        return 1.0
    if v in ("false", "0", "0.0", ""):
        return 0.0
    return float(v)


def _csv_rows(path: Path) -> Iterable[dict[str, str]]:
    csv.field_size_limit(1 << 28)
    with path.open(encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _csv_examples(path: Path, group: str, drop: set[str], strong: str, weak: str) -> list[Example]:
    out = []
    answer_column = f"{weak}_response"
    for row in _csv_rows(path):
        if row["prompt"] in drop:
            continue
        if strong not in row or weak not in row:
            raise DatasetError(f"{path}: missing column {strong!r} or {weak!r}")
        out.append(Example(row["prompt"], _truth(row[strong]), _truth(row[weak]), group, row.get(answer_column)))
    return out


def load_mmlu(data_dir: str | os.PathLike, strong: str = STRONG_MODEL, weak: str = WEAK_MODEL) -> list[Example]:
    """All MMLU subjects under ``data_dir/mmlu``; the group is the subject (file stem)."""
    root = Path(data_dir) / "mmlu"
    files = sorted(p for p in root.glob("*.csv"))
    if not files:
        raise DatasetError(f"no MMLU csv files under {root}")
    drop = _read_contaminated(root / "contaminated_prompts.jsonl")
    out: list[Example] = []
    for f in files:
        out.extend(_csv_examples(f, f.stem.removeprefix("mmlu_"), drop, strong, weak))
    return out


def load_gsm8k(data_dir: str | os.PathLike, strong: str = STRONG_MODEL, weak: str = WEAK_MODEL) -> list[Example]:
    """GSM8K prompts with each model's correctness and the weak model's answer (read only by
    the cascade's answer verifier: a prompt-only router decides before any model answers)."""
    root = Path(data_dir) / "gsm8k"
    path = root / "responses.csv"
    if not path.exists():
        raise DatasetError(f"missing {path}")
    return _csv_examples(path, "gsm8k", _read_contaminated(root / "contaminated_prompts.jsonl"), strong, weak)


def load_mt_bench(
    data_dir: str | os.PathLike,
    strong: str = STRONG_MODEL,
    weak: str = WEAK_MODEL,
    max_score: float = 10.0,
) -> list[Example]:
    """MT Bench: route on the first turn; a model's quality is its mean judge score over
    all judgements of that question (both turns), scaled to [0, 1] by ``max_score``."""
    root = Path(data_dir) / "mt_bench"
    qpath, jpath = root / "question.jsonl", root / "judgements.jsonl"
    if not qpath.exists() or not jpath.exists():
        raise DatasetError(f"MT Bench needs {qpath} and {jpath}")
    drop = _read_contaminated(root / "contaminated_prompts.jsonl")
    sums: dict[tuple[object, str], list[float]] = {}
    with jpath.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            j = json.loads(line)
            score = float(j["score"])
            if score < 0:  # FastChat writes -1 when the judge output could not be parsed
                continue
            acc = sums.setdefault((j["question_id"], j["model"]), [0.0, 0.0])
            acc[0] += score
            acc[1] += 1
    out: list[Example] = []
    with qpath.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            q = json.loads(line)
            turns = q["turns"]
            if any(t in drop for t in turns[:2]):
                continue
            s, w = sums.get((q["question_id"], strong)), sums.get((q["question_id"], weak))
            if not s or not w:
                continue
            out.append(
                Example(turns[0], s[0] / s[1] / max_score, w[0] / w[1] / max_score, str(q.get("category", "mt-bench")))
            )
    return out


def load_jsonl(path: str | os.PathLike, strong: str = "strong", weak: str = "weak") -> list[Example]:
    """Our own training format (see the module docstring)."""
    out: list[Example] = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{n}: each line is a JSON object")
            prompt, group, answer = obj.get("prompt"), str(obj.get("group", "")), obj.get("weak_answer")
            if not isinstance(prompt, str):
                raise DatasetError(f"{path}:{n}: 'prompt' must be a string")
            if answer is not None and not isinstance(answer, str):
                raise DatasetError(f"{path}:{n}: 'weak_answer' must be a string")
            if "scores" in obj:
                scores = obj["scores"]
                if not isinstance(scores, dict) or strong not in scores or weak not in scores:
                    raise DatasetError(f"{path}:{n}: 'scores' needs keys {strong!r} and {weak!r}")
                values = [scores[strong], scores[weak]]
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in values):
                    raise DatasetError(f"{path}:{n}: scores must be finite numbers")
                out.append(Example(prompt, float(values[0]), float(values[1]), group, answer))
            elif "winner" in obj:
                value = {"strong": (1.0, 0.0), "weak": (0.0, 1.0), "tie": (0.5, 0.5)}.get(obj["winner"])
                if value is None:
                    raise DatasetError(f"{path}:{n}: 'winner' must be strong, weak or tie")
                out.append(Example(prompt, value[0], value[1], group, answer))
            else:
                raise DatasetError(f"{path}:{n}: need 'scores' or 'winner'")
    if not out:
        raise DatasetError(f"{path}: no examples")
    return out


def load_benchmark(data_dir: str | os.PathLike, benchmark: str) -> list[Example]:
    """Load one benchmark (``mmlu``, ``gsm8k``, ``mt-bench``) or ``all`` of the present ones."""
    name = benchmark.replace("_", "-")
    if name == "mmlu":
        return load_mmlu(data_dir)
    if name == "gsm8k":
        return load_gsm8k(data_dir)
    if name == "mt-bench":
        return load_mt_bench(data_dir)
    if name == "all":
        root = Path(data_dir)
        out: list[Example] = []
        if (root / "mmlu").is_dir():
            out += load_mmlu(root)
        if (root / "gsm8k" / "responses.csv").exists():
            out += load_gsm8k(root)
        if (root / "mt_bench" / "judgements.jsonl").exists():
            out += load_mt_bench(root)
        if not out:
            raise DatasetError(f"no benchmark data under {root}")
        return out
    raise DatasetError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)} or all")
