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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchboard.textlines import NotUtf8, not_utf8_message, numbered_lines

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


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each JSON object of a JSONL file with its line number; anything else is a DatasetError naming the line."""
    try:
        for n, line in numbered_lines(path):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{n}: each line is a JSON object")
            yield n, obj
    except NotUtf8 as exc:
        raise DatasetError(str(exc)) from None


def _value(obj: dict[str, Any], key: str, kinds: type | tuple[type, ...], what: str, where: str) -> Any:
    """``obj[key]``, which must be an instance of ``kinds`` (``what`` says which in the error)."""
    value = obj.get(key)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise DatasetError(f"{where}: {key!r} must be {what}")
    return value


def _read_contaminated(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {_value(obj, "eval_prompt", str, "a string", f"{path}:{n}") for n, obj in _jsonl_objects(path)}


def _quality(value: float, where: str) -> float:
    """A model's quality on a prompt: a finite number in [0, 1] (a score on another scale must be rescaled)."""
    if not math.isfinite(value):
        raise DatasetError(f"{where}: scores must be finite numbers")
    if not 0.0 <= value <= 1.0:
        raise DatasetError(f"{where}: scores must be from 0 to 1, got {value:g} (rescale other scales, "
                           "e.g. divide a 0-10 judge score by 10)")
    return value


def _score(value: Any, where: str) -> float:
    """A JSON score: a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(f"{where}: scores must be finite numbers")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    return _quality(number, where)


def _truth(value: str | None, where: str) -> float:
    """A CSV correctness value: true or false (1 or 0), or a score from 0 to 1."""
    if value is None:  # the csv module's value for a row shorter than the header
        raise DatasetError(f"{where}: the row has fewer values than the header")
    v = value.strip().lower()
    if v in ("true", "1", "1.0"):
        return 1.0
    if v in ("false", "0", "0.0", ""):
        return 0.0
    try:
        number = float(v)
    except ValueError:
        raise DatasetError(f"{where}: {value!r} is not true, false or a score from 0 to 1") from None
    return _quality(number, where)


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Each row with the line it starts on (a quoted prompt may span lines)."""
    csv.field_size_limit(1 << 28)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            start = 2  # line 1 is the header
            for row in reader:
                yield start, row
                start = reader.line_num + 1
    except UnicodeDecodeError:  # the csv module decodes in blocks, not lines
        raise DatasetError(not_utf8_message(path)) from None


def _csv_examples(path: Path, group: str, drop: set[str], strong: str, weak: str) -> list[Example]:
    out = []
    answer_column = f"{weak}_response"
    for line, row in _csv_rows(path):
        if any(column not in row for column in ("prompt", strong, weak)):
            raise DatasetError(f"{path}: needs the columns 'prompt', {strong!r} and {weak!r}")
        if row["prompt"] in drop:
            continue
        where = f"{path}:{line}"
        out.append(Example(row["prompt"], _truth(row[strong], where), _truth(row[weak], where), group,
                           row.get(answer_column)))
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
    sums = _judge_score_sums(jpath, max_score)
    out: list[Example] = []
    for n, q in _jsonl_objects(qpath):
        where = f"{qpath}:{n}"
        question = _value(q, "question_id", (int, str), "a number or a string", where)
        turns = _value(q, "turns", list, "a list of strings", where)
        if not turns or not all(isinstance(t, str) for t in turns):
            raise DatasetError(f"{where}: 'turns' must be a list of strings")
        if any(t in drop for t in turns[:2]):
            continue
        s, w = sums.get((question, strong)), sums.get((question, weak))
        if not s or not w:
            continue
        out.append(
            Example(turns[0], s[0] / s[1] / max_score, w[0] / w[1] / max_score, str(q.get("category", "mt-bench")))
        )
    return out


def _judge_score_sums(path: Path, max_score: float) -> dict[tuple[object, str], list[float]]:
    """(question id, model) -> [sum of judge scores, number of scores] over the judgements at ``path``."""
    sums: dict[tuple[object, str], list[float]] = {}
    for n, j in _jsonl_objects(path):
        where = f"{path}:{n}"
        score = float(_value(j, "score", (int, float), "a number", where))
        if score < 0:  # FastChat writes -1 when the judge output could not be parsed
            continue
        if not score <= max_score:
            raise DatasetError(f"{where}: 'score' must be at most {max_score:g}, got {score:g}")
        key = (_value(j, "question_id", (int, str), "a number or a string", where),
               _value(j, "model", str, "a string", where))
        acc = sums.setdefault(key, [0.0, 0.0])
        acc[0] += score
        acc[1] += 1
    return sums


def load_jsonl(path: str | os.PathLike, strong: str = "strong", weak: str = "weak") -> list[Example]:
    """Our own training format (see the module docstring)."""
    path = Path(path)
    out = [_jsonl_example(obj, strong, weak, f"{path}:{n}") for n, obj in _jsonl_objects(path)]
    if not out:
        raise DatasetError(f"{path}: no examples")
    return out


_WINNERS = {"strong": (1.0, 0.0), "weak": (0.0, 1.0), "tie": (0.5, 0.5)}


def _jsonl_example(obj: dict[str, Any], strong: str, weak: str, where: str) -> Example:
    """One line of our training format; ``where`` is its file and line, for errors."""
    prompt, group, answer = obj.get("prompt"), str(obj.get("group", "")), obj.get("weak_answer")
    if not isinstance(prompt, str):
        raise DatasetError(f"{where}: 'prompt' must be a string")
    if answer is not None and not isinstance(answer, str):
        raise DatasetError(f"{where}: 'weak_answer' must be a string")
    if "scores" in obj:
        scores = obj["scores"]
        if not isinstance(scores, dict) or strong not in scores or weak not in scores:
            raise DatasetError(f"{where}: 'scores' needs keys {strong!r} and {weak!r}")
        return Example(prompt, _score(scores[strong], where), _score(scores[weak], where), group, answer)
    if "winner" in obj:
        winner = obj["winner"]
        if not isinstance(winner, str) or winner not in _WINNERS:
            raise DatasetError(f"{where}: 'winner' must be strong, weak or tie")
        return Example(prompt, *_WINNERS[winner], group, answer)
    raise DatasetError(f"{where}: need 'scores' or 'winner'")


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
