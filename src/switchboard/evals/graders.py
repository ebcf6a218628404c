"""Graders: is a model's answer to an item right?

Each grader turns (answer text, item) into a `Grade`: correct or not, and what
it extracted, so reports can show *why*. Graders are chosen by a spec, on the
command line or per dataset item:

    exact                         whole answer equals `expected` (case, spacing and a final period ignored)
    exact:mode=contains           `expected` appears in the answer
    regex:pattern=...             the pattern matches; with a group, group 1 must equal `expected`
    numeric                       the final number equals `expected` (by value: 18 == 18.00 == $18)
    numeric:match=digits          RouteLLM's GSM8K rule: the last run of digits, as text ("18.00" -> "00")
    choice[:choices=ABCDE]        multiple choice: the chosen letter equals `expected` (letters A-D by default)
    json                          the answer is valid JSON (code fences allowed)
    json:schema=FILE              ... and valid against a JSON schema
    judge:model=M,rubric=TEXT     an LLM judge (model M, through the gateway) says PASS
    NAME:{"json": "settings"}     settings as a JSON object (for patterns with commas)

The numeric grader reads the first number after the last `####` when there is
one (GSM8K's answer marker), else the last number of the answer; the same rule reads
`expected`, so a reference solution or another model's answer works as expected.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from switchboard.evals.datasets import Item

GRADERS = ("exact", "regex", "numeric", "choice", "json", "judge")


class GraderError(ValueError):
    """A grader spec or setting that cannot work."""


@dataclass(slots=True)
class Grade:
    correct: bool
    extracted: str | None = None
    detail: str = ""


def parse_spec(spec: str) -> dict[str, Any]:
    """`name`, `name:k=v,k=v` or `name:{json}` -> {"name": ..., settings...}."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in GRADERS:
        raise GraderError(f"unknown grader {name!r} (known: {', '.join(GRADERS)})")
    out: dict[str, Any] = {"name": name}
    rest = rest.strip()
    if rest.startswith("{"):
        try:
            settings = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise GraderError(f"grader {name}: settings are not valid JSON: {exc}") from None
        if not isinstance(settings, dict):
            raise GraderError(f"grader {name}: settings must be a JSON object")
        out.update(settings)
    elif rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise GraderError(f"grader {name}: expected key=value, got {part!r}")
            out[key.strip()] = value.strip()
    return out


def _norm(text: str, case_sensitive: bool = False) -> str:
    text = " ".join(str(text).split()).rstrip(".").strip()
    return text if case_sensitive else text.casefold()


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))


# ---------------------------------------------------------------- exact, regex


class ExactGrader:
    name = "exact"

    def __init__(self, mode: str = "equals", case_sensitive: Any = False) -> None:
        if mode not in ("equals", "contains"):
            raise GraderError("grader exact: mode must be 'equals' or 'contains'")
        self.mode, self.case_sensitive = mode, _truthy(case_sensitive)

    async def grade(self, output: str, item: Item) -> Grade:
        if item.expected is None:
            raise GraderError(f"item {item.id}: the exact grader needs 'expected'")
        want, got = _norm(item.expected, self.case_sensitive), _norm(output, self.case_sensitive)
        ok = (want in got) if self.mode == "contains" else (want == got)
        return Grade(ok, got[:200])


class RegexGrader:
    name = "regex"

    def __init__(self, pattern: str | None = None, ignore_case: Any = True) -> None:
        flags = re.IGNORECASE if _truthy(ignore_case) else 0
        try:
            self.pattern = re.compile(pattern, flags | re.MULTILINE) if pattern else None
        except re.error as exc:
            raise GraderError(f"grader regex: bad pattern: {exc}") from None
        self.flags = flags

    async def grade(self, output: str, item: Item) -> Grade:
        if self.pattern is None:
            if not isinstance(item.expected, str):
                raise GraderError(f"item {item.id}: the regex grader needs a pattern or a string 'expected'")
            try:
                m = re.search(item.expected, output, self.flags | re.MULTILINE)
            except re.error as exc:
                raise GraderError(f"item {item.id}: bad pattern in 'expected': {exc}") from None
            return Grade(m is not None, m.group(0)[:200] if m else None)
        m = self.pattern.search(output)
        if m is None:
            return Grade(False, None, "no match")
        got = m.group(1) if self.pattern.groups else m.group(0)
        if item.expected is None or got is None:
            return Grade(got is not None, got)
        return Grade(_norm(got) == _norm(item.expected), got[:200])


# ---------------------------------------------------------------- numeric

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_DIGITS = re.compile(r"\d+")


def final_answer_region(text: str) -> str:
    return text.rsplit("####", 1)[-1] if "####" in text else text


def last_number(text: str) -> float | None:
    """The final answer by value ("$1,234.50" -> 1234.5): the first number after the last `####`, else the last number."""
    found = _NUMBER.findall(final_answer_region(text))
    if "####" in text:
        found = found[:1]
    for raw in reversed(found):
        try:
            return float(raw.replace(",", ""))
        except ValueError:
            continue
    return None


def last_digits(text: str) -> str | None:
    """RouteLLM's GSM8K rule: the last run of digits in the whole text, commas removed."""
    found = _DIGITS.findall(text.replace(",", ""))
    return found[-1] if found else None


class NumericGrader:
    name = "numeric"

    def __init__(self, match: str = "value", tolerance: Any = 1e-6) -> None:
        if match not in ("value", "digits"):
            raise GraderError("grader numeric: match must be 'value' or 'digits'")
        try:
            self.tolerance = float(tolerance)
        except (TypeError, ValueError):
            raise GraderError("grader numeric: tolerance must be a number") from None
        self.match = match

    async def grade(self, output: str, item: Item) -> Grade:
        expected = item.expected
        if expected is None:
            raise GraderError(f"item {item.id}: the numeric grader needs 'expected'")
        if self.match == "digits":
            want, got = last_digits(str(expected)), last_digits(output)
            return Grade(got is not None and got == want, got)
        want_v = float(expected) if isinstance(expected, (int, float)) and not isinstance(expected, bool) \
            else last_number(str(expected))
        if want_v is None:
            raise GraderError(f"item {item.id}: 'expected' holds no number: {expected!r}")
        got_v = last_number(output)
        if got_v is None:
            return Grade(False, None, "no number in the answer")
        ok = math.isclose(got_v, want_v, rel_tol=self.tolerance, abs_tol=self.tolerance)
        return Grade(ok, f"{got_v:g}")


# ---------------------------------------------------------------- multiple choice


class ChoiceGrader:
    name = "choice"

    def __init__(self, choices: str = "ABCD") -> None:
        self.letters = "".join(c for c in str(choices).upper() if c.isalpha()) or "ABCD"
        cls = f"[{re.escape(self.letters)}]"
        self.patterns = [
            re.compile(rf"answer\s*(?:is|:)?\s*(?:option\s*)?\(?({cls})\)?(?![A-Za-z])", re.IGNORECASE),
            re.compile(rf"^\s*\(?({cls})[\).:](?:\s|$)", re.MULTILINE),
            re.compile(rf"\(({cls})\)"),
            re.compile(rf"(?<![A-Za-z])({cls})(?![A-Za-z])"),
        ]

    def extract(self, output: str) -> str | None:
        for pattern in self.patterns:
            m = pattern.search(output)
            if m:
                return m.group(1).upper()
        return None

    def expected_letter(self, item: Item) -> str:
        exp = item.expected
        choices = item.meta.get("choices")
        if isinstance(exp, int) and not isinstance(exp, bool) and 0 <= exp < len(self.letters):
            return self.letters[exp]
        if isinstance(exp, str) and len(exp.strip()) == 1 and exp.strip().upper() in self.letters:
            return exp.strip().upper()
        if isinstance(exp, str) and isinstance(choices, list) and exp in choices:
            return self.letters[choices.index(exp)]
        raise GraderError(f"item {item.id}: the choice grader needs 'expected' as a letter, an index or one of 'choices'")

    async def grade(self, output: str, item: Item) -> Grade:
        want = self.expected_letter(item)
        got = self.extract(output)
        return Grade(got == want, got)


# ---------------------------------------------------------------- JSON


def strip_fences(text: str) -> str:
    m = re.search(r"```(?:json)?\s*\n?(.*?)```", text, re.DOTALL)
    return (m.group(1) if m else text).strip()


class JsonGrader:
    name = "json"

    def __init__(self, schema: Any = None) -> None:
        if isinstance(schema, str):
            try:
                with open(schema, encoding="utf-8") as f:
                    schema = json.load(f)
            except (OSError, json.JSONDecodeError) as exc:
                raise GraderError(f"grader json: cannot read schema {schema}: {exc}") from None
        if schema is not None and not isinstance(schema, dict):
            raise GraderError("grader json: schema must be a JSON object or a file holding one")
        self.schema = schema

    async def grade(self, output: str, item: Item) -> Grade:
        try:
            value = json.loads(strip_fences(output))
        except json.JSONDecodeError as exc:
            return Grade(False, None, f"invalid JSON: {exc}")
        schema = self.schema or (item.meta.get("schema") if isinstance(item.meta.get("schema"), dict) else None)
        if schema is None:
            return Grade(True, "valid JSON")
        problem = schema_problem(value, schema)
        return Grade(problem is None, "valid" if problem is None else "invalid", problem or "")


def schema_problem(value: Any, schema: dict[str, Any]) -> str | None:
    """The first way `value` breaks `schema` (jsonschema when installed, else a core subset), or None."""
    try:
        import jsonschema
    except ImportError:
        return _mini_schema(value, schema, "$")
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return exc.message[:300]
    except jsonschema.SchemaError as exc:
        raise GraderError(f"grader json: the schema is invalid: {exc.message}") from None
    return None


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _mini_schema(value: Any, schema: dict[str, Any], at: str) -> str | None:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if kinds:
        def is_kind(k: str) -> bool:
            if k == "integer":
                return isinstance(value, int) and not isinstance(value, bool)
            if k == "number":
                return isinstance(value, (int, float)) and not isinstance(value, bool)
            return isinstance(value, _TYPES.get(k, object))

        if not any(is_kind(k) for k in kinds):
            return f"{at}: expected {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{at}: not one of {schema['enum']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"{at}: missing required property {key!r}"
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key in value:
                problem = _mini_schema(value[key], sub, f"{at}.{key}")
                if problem:
                    return problem
        if schema.get("additionalProperties") is False:
            extra = [k for k in value if k not in props]
            if extra:
                return f"{at}: unexpected property {extra[0]!r}"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            problem = _mini_schema(v, schema["items"], f"{at}[{i}]")
            if problem:
                return problem
    return None


# ---------------------------------------------------------------- LLM as judge

# (model, messages) -> (judge's answer text, its cost in USD)
JudgeCall = Callable[[str, list[dict[str, Any]]], Awaitable[tuple[str, float]]]

JUDGE_PROMPT = """You are grading an AI assistant's answer.

Rubric: {rubric}

Question:
{question}
{reference}
Answer to grade:
{answer}

Think briefly, then end with one line, exactly `VERDICT: PASS` or `VERDICT: FAIL`."""

DEFAULT_RUBRIC = "Is the answer correct, complete and responsive to the question?"
_VERDICT = re.compile(r"VERDICT\s*:\s*\**\s*(PASS|FAIL)", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    found = _VERDICT.findall(text)
    if found:
        return found[-1].upper() == "PASS"
    words = re.findall(r"\b(PASS|FAIL)\b", text.upper())
    return words[-1] == "PASS" if words else None


class JudgeGrader:
    name = "judge"

    def __init__(self, model: str | None = None, rubric: str | None = None, call: JudgeCall | None = None) -> None:
        if not model:
            raise GraderError("grader judge: needs model=NAME (the judge, called through the gateway)")
        if rubric and rubric.startswith("@"):
            try:
                with open(rubric[1:], encoding="utf-8") as f:
                    rubric = f.read().strip()
            except OSError as exc:
                raise GraderError(f"grader judge: cannot read rubric {rubric[1:]}: {exc.strerror}") from None
        if call is None:
            raise GraderError("grader judge: no gateway connection to call the judge with")
        self.model, self.rubric, self.call = model, rubric or DEFAULT_RUBRIC, call
        self.cost = 0.0

    async def grade(self, output: str, item: Item) -> Grade:
        reference = f"\nReference answer: {item.expected}\n" if item.expected not in (None, "") else ""
        prompt = JUDGE_PROMPT.format(rubric=self.rubric, question=item.prompt, reference=reference, answer=output)
        text, cost = await self.call(self.model, [{"role": "user", "content": prompt}])
        self.cost += cost
        verdict = parse_verdict(text)
        if verdict is None:
            return Grade(False, None, "judge gave no verdict: " + text[-200:])
        return Grade(verdict, "PASS" if verdict else "FAIL", text[-300:])


# ---------------------------------------------------------------- building


def make_grader(spec: dict[str, Any], judge_call: JudgeCall | None = None) -> Any:
    settings = {k: v for k, v in spec.items() if k != "name"}
    name = spec.get("name")
    try:
        if name == "exact":
            return ExactGrader(**settings)
        if name == "regex":
            return RegexGrader(**settings)
        if name == "numeric":
            return NumericGrader(**settings)
        if name == "choice":
            return ChoiceGrader(**settings)
        if name == "json":
            return JsonGrader(**settings)
        if name == "judge":
            return JudgeGrader(call=judge_call, **settings)
    except TypeError as exc:
        raise GraderError(f"grader {name}: unknown setting ({exc})") from None
    raise GraderError(f"unknown grader {name!r} (known: {', '.join(GRADERS)})")


class GraderSet:
    """Graders built once per distinct spec, so per-item overrides cost nothing per item."""

    def __init__(self, default: dict[str, Any] | None, judge_call: JudgeCall | None = None) -> None:
        self.default = default
        self.judge_call = judge_call
        self._built: dict[str, Any] = {}

    def for_item(self, item: Item) -> Any:
        spec = item.grader or self.default or ({"name": "numeric"} if item.meta.get("format") == "gsm8k" else
                                               {"name": "exact"})
        key = json.dumps(spec, sort_keys=True)
        grader = self._built.get(key)
        if grader is None:
            grader = self._built[key] = make_grader(spec, self.judge_call)
        return grader

    def judge_models(self) -> list[str]:
        """The judges of the graders built so far."""
        return sorted({g.model for g in self._built.values() if isinstance(g, JudgeGrader)})

    @property
    def judge_cost(self) -> float:
        return sum(getattr(g, "cost", 0.0) for g in self._built.values())
