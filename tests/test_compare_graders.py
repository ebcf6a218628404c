"""Graders and datasets of `compare`, and a small end-to-end run with per-item graders, a judge and errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from support import GatewayProc, MockProc
from switchboard.evals.analysis import pareto, recommend, summarize, wilson
from switchboard.evals.datasets import DatasetError, Item, load_dataset
from switchboard.evals.graders import GraderError, make_grader, parse_spec, parse_verdict


def grade(spec: str, output: str, expected=None, **meta) -> bool:
    item = Item(id="1", messages=[{"role": "user", "content": "q"}], expected=expected, meta=meta)
    return asyncio.run(make_grader(parse_spec(spec)).grade(output, item)).correct


def test_numeric_by_value_and_by_digits():
    assert grade("numeric", "So she makes $18.00 per day.", "18")
    assert grade("numeric", "Total: 1,234.5 dollars", 1234.5)
    assert grade("numeric", "steps 3 + 4 = 7\n#### 7\nthen 9 more words 12", "7"), "#### marks the final answer"
    assert not grade("numeric", "It is 17.", "18")
    assert not grade("numeric", "no number here", "18")
    assert grade("numeric", "-10 degrees", "-10") and not grade("numeric", "10 degrees", "-10")
    # RouteLLM's rule reads the last run of digits as text: "$18.00" is "00", and signs are ignored
    assert not grade("numeric:match=digits", "So she makes $18.00.", "18")
    assert grade("numeric:match=digits", "#### 18", "The answer\n#### 18")
    assert grade("numeric:match=digits", "-3 degrees", "-3") and grade("numeric:match=digits", "3 degrees", "-3")


def test_exact_regex_choice_json():
    assert grade("exact", "  Paris. ", "paris") and not grade("exact", "Paris, France", "Paris")
    assert grade("exact:mode=contains", "It is Paris, France.", "paris")
    assert grade("regex:pattern=answer: (\\w+)", "The answer: Blue", "blue")
    assert not grade("regex:pattern=answer: (\\w+)", "The answer: red", "blue")
    assert grade("regex", "order #12345 shipped", "#\\d{5}")
    assert grade('regex:{"pattern": "x{1,3}, y"}', "xx, y", None)
    assert grade("choice", "The answer is (C) because...", "C")
    assert grade("choice", "B. Because the others are wrong", "B")
    assert grade("choice", "I pick D", 3)
    assert grade("choice", "Answer: A", "Mercury", choices=["Mercury", "Venus"])
    assert not grade("choice", "The answer is B", "C")
    assert grade("json", '```json\n{"a": 1}\n```') and not grade("json", "{a: 1}")
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    assert grade('json:{"schema": %s}' % json.dumps(schema), '{"a": 3}')
    assert not grade('json:{"schema": %s}' % json.dumps(schema), '{"a": "3"}')
    assert not grade('json:{"schema": %s}' % json.dumps(schema), '{"b": 3}')


def test_bad_specs_and_verdicts():
    for spec in ("nope", "numeric:match=roman", "regex:pattern=(", "numeric:bogus=1", "exact:novalue"):
        with pytest.raises(GraderError):
            make_grader(parse_spec(spec))
    with pytest.raises(GraderError, match="needs model"):
        make_grader(parse_spec("judge"))
    assert parse_verdict("reasoning...\nVERDICT: PASS") is True
    assert parse_verdict("VERDICT: **FAIL**") is False
    assert parse_verdict("no idea") is None


def test_dataset_formats_and_errors(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "prompt": "2+2?", "expected": "4", "grader": "numeric"}\n\n'
                    '{"messages": [{"role": "user", "content": "hi"}], "expected": "hello", "system": "Be nice."}\n'
                    '{"question": "Tom has 3 apples...", "answer": "3 + 4 = 7\\n#### 1,007"}\n')
    items = load_dataset(data)
    assert [i.id for i in items] == ["a", "3", "4"]
    assert items[0].grader == {"name": "numeric"} and items[1].messages[0]["role"] == "system"
    assert items[2].expected == "1007" and items[2].meta["format"] == "gsm8k" and items[2].prompt.startswith("Tom")
    assert len(load_dataset(data, limit=1)) == 1
    for bad, message in (('{"prompt": "x"}\n{"nothing": 1}\n', ":2: needs 'messages'"),
                         ('{"prompt": "x", "id": 1}\n{"prompt": "y", "id": 1}\n', ":2: duplicate id"),
                         ("{not json\n", ":1: not valid JSON"), ("", "empty"),
                         ('{"prompt": "x", "grader": 5}\n', ":1: 'grader' must be")):
        data.write_text(bad)
        with pytest.raises(DatasetError, match=message):
            load_dataset(data)


def test_wilson_pareto_recommend():
    lo, hi = wilson(8, 10)
    assert 0.49 < lo < 0.5 and 0.94 < hi < 0.95
    assert wilson(0, 0) == (0.0, 1.0)
    rows = lambda k, n, cost: [{"correct": i < k, "cost": cost, "latency_ms": 10.0, "ttft_ms": 5.0} for i in range(n)]
    big, small, bad = summarize("big", rows(90, 100, 0.01)), summarize("small", rows(88, 100, 0.001)), \
        summarize("bad", rows(50, 100, 0.005))
    assert pareto([big, small, bad]) == ["small", "big"]
    text = recommend([big, small, bad])
    assert text.startswith("small keeps 98% of big's accuracy") and "at 10% of its cost" in text
    assert recommend([big, bad]).startswith("Stay on big")


@pytest.fixture(scope="module")
def mock_gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graders")
    mock = MockProc(tmp, {"good-up": {"reply": "The answer is 42. Answer: B"}, "bad-up": {"reply": "I think 41."},
                          "judge-up": {"reply": "Looks right.\nVERDICT: PASS"},
                          "broken-up": {"faults": [{"kind": "status", "status": 400, "rate": 1.0}]}})

    def model(up, price):
        return {"deployments": [{"provider": "openai", "model": up, "base_url": mock.url + "/v1"}],
                "pricing": {"input_per_mtok": price, "output_per_mtok": price}}

    gw = GatewayProc(tmp, {"auth": {"master_key": "${SB_KEY}"},
                           "models": {"good": model("good-up", 5.0), "bad": model("bad-up", 1.0),
                                      "judge": model("judge-up", 1.0), "broken": model("broken-up", 1.0)}},
                     env={"SB_KEY": "sk-compare-test-key"})
    yield gw, tmp
    gw.stop()
    mock.stop()


def run_cli(*args: str, env_key: str | None = "sk-compare-test-key") -> subprocess.CompletedProcess:
    import os

    env = {**os.environ}
    env.pop("SWITCHBOARD_API_KEY", None)
    if env_key:
        env["SWITCHBOARD_API_KEY"] = env_key
    return subprocess.run([sys.executable, "-m", "switchboard", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_compare_with_per_item_graders_judge_and_errors(mock_gateway):
    gw, tmp = mock_gateway
    data = tmp / "mixed.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in [
        {"id": "num", "prompt": "6*7?", "expected": "42", "grader": "numeric"},
        {"id": "mc", "prompt": "Pick one", "expected": "B", "grader": "choice"},
        {"id": "re", "prompt": "Say it", "expected": "42", "grader": {"name": "regex", "pattern": "is (\\d+)"}},
        {"id": "judged", "prompt": "Explain", "grader": {"name": "judge", "model": "judge", "rubric": "Be right."}},
    ]) + "\n")
    out = tmp / "out"
    proc = run_cli("compare", "--models", "good,bad,broken", "--data", str(data), "--url", gw.url,
                   "--out", str(out), "--json", "--retries", "0")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    s = {row["model"]: row for row in summary["summaries"]}
    assert s["good"]["correct"] == 4 and s["bad"]["correct"] == 1  # the judge passes everything
    assert s["broken"]["errors"] == 4 and s["broken"]["accuracy"] == 0  # an error counts as wrong
    result = json.loads((out / "results.json").read_text())
    assert result["items"][0]["results"]["broken"]["error"].startswith("HTTP 400")
    assert s["good"]["cost_per_1k"] == pytest.approx(5 * s["bad"]["cost_per_1k"] * (
        s["good"]["prompt_tokens_mean"] + s["good"]["completion_tokens_mean"]) / (
        s["bad"]["prompt_tokens_mean"] + s["bad"]["completion_tokens_mean"]), rel=1e-6)
    assert summary["judge_cost"] > 0
    # a second run asks nothing again: answers and judge verdicts are cached
    again = run_cli("compare", "--models", "good,bad", "--data", str(data), "--url", gw.url, "--out", str(out),
                    "--json")
    assert json.loads(again.stdout.strip().splitlines()[-1])["requests_made"] == 0


def test_compare_errors_are_one_clear_line(mock_gateway, tmp_path):
    gw, tmp = mock_gateway
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "x", "expected": "1"}\n')
    no_key = run_cli("compare", "--models", "good", "--data", str(data), "--url", gw.url, "--out",
                     str(tmp_path / "o"), env_key=None)
    assert no_key.returncode == 2 and "HTTP 401" in no_key.stderr and "Traceback" not in no_key.stderr
    down = run_cli("compare", "--models", "good", "--data", str(data), "--url", "http://127.0.0.1:9",
                   "--out", str(tmp_path / "o"))
    assert down.returncode == 2 and "cannot reach the gateway" in down.stderr and "Traceback" not in down.stderr
    bad = run_cli("compare", "--models", "good", "--data", str(data), "--grader", "fuzzy", "--url", gw.url)
    assert bad.returncode == 2 and "unknown grader 'fuzzy'" in bad.stderr
