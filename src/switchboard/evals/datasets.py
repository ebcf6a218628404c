"""Evaluation datasets: the items `compare` sends to every model.

One JSON object a line. The general form:

    {"id": "q1", "messages": [{"role": "user", "content": "..."}], "expected": "42",
     "grader": "numeric" | {"name": "regex", "pattern": "..."}}

`prompt` (a string) may stand for a single user message; `id` defaults to the
line number; `grader` (optional) overrides the command line's for that item.
GSM8K's own layout (`question`, `answer` with the final number after `#### `)
is read as is: the question is the prompt, the final number the expected
answer, graded `numeric` unless the command line says otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson

FORMATS = ("auto", "jsonl", "gsm8k")


class DatasetError(ValueError):
    """A dataset line that cannot be used, with its file and line number."""


@dataclass(slots=True)
class Item:
    id: str
    messages: list[dict[str, Any]]
    expected: Any = None
    grader: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The last user message's text (for reports)."""
        from switchboard.providers.replay import last_user_text

        return last_user_text(self.messages)


def gsm8k_final_answer(answer: str) -> str:
    """The final answer of a GSM8K reference solution: the text after the last `####`."""
    return answer.rsplit("####", 1)[-1].strip().replace(",", "")


def _grader_spec(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return dict(value)
    raise DatasetError(f"{where}: 'grader' must be a grader name or an object with a 'name'")


def parse_item(rec: Any, number: int, where: str, fmt: str = "auto") -> Item:
    if not isinstance(rec, dict):
        raise DatasetError(f"{where}: each line must be a JSON object")
    if fmt == "gsm8k" or (fmt == "auto" and "question" in rec and "answer" in rec and "messages" not in rec):
        if not isinstance(rec.get("question"), str) or not isinstance(rec.get("answer"), str):
            raise DatasetError(f"{where}: a GSM8K line needs string 'question' and 'answer'")
        return Item(id=str(rec.get("id", number)), messages=[{"role": "user", "content": rec["question"]}],
                    expected=gsm8k_final_answer(rec["answer"]), grader=_grader_spec(rec.get("grader"), where),
                    meta={"format": "gsm8k"})
    if isinstance(rec.get("messages"), list) and rec["messages"]:
        messages = rec["messages"]
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise DatasetError(f"{where}: 'messages' must be a list of {{role, content}} objects")
    elif isinstance(rec.get("prompt"), str) and rec["prompt"].strip():
        messages = [{"role": "user", "content": rec["prompt"]}]
    else:
        raise DatasetError(f"{where}: needs 'messages' (a non-empty list) or 'prompt' (a string)")
    if isinstance(rec.get("system"), str):
        messages = [{"role": "system", "content": rec["system"]}, *messages]
    meta = {k: v for k, v in rec.items() if k not in ("id", "messages", "prompt", "expected", "grader", "system")}
    return Item(id=str(rec.get("id", number)), messages=messages, expected=rec.get("expected"),
                grader=_grader_spec(rec.get("grader"), where), meta=meta)


def load_dataset(path: str | os.PathLike, fmt: str = "auto", limit: int | None = None) -> list[Item]:
    """Read a dataset file; errors name the file and line. Ids must be unique."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r} (known: {', '.join(FORMATS)})")
    items: list[Item] = []
    seen: set[str] = set()
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc.strerror or exc}") from None
    with f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not valid JSON ({exc})") from None
            item = parse_item(rec, number, where, fmt)
            if item.id in seen:
                raise DatasetError(f"{where}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise DatasetError(f"{path}: the dataset is empty")
    return items
