"""`switchboard compare` against a small live gateway: what it charges, and the model names it is given.

The cost of an answer is what the gateway billed (deployment-level `pricing` overrides the model's), never
re-priced from the model-level list; a name the gateway does not serve is one line and exit 2, before any
request is made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import GatewayProc, MockProc, http, wait_for

DEPLOYMENT_PRICE = {"input_per_mtok": 10000, "output_per_mtok": 20000}
LIST_PRICE = {"input_per_mtok": 1, "output_per_mtok": 2}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare-gateway")
    mock = MockProc(tmp, {"m-up": {"reply": "abcdefghij abcdefghij abcdefghij abcdefg"}})
    up = {"provider": "openai", "base_url": mock.url + "/v1", "api_key": "${UP_KEY}"}
    config = {"models": {
        "dual": {"deployments": [{**up, "model": "m-up", "pricing": DEPLOYMENT_PRICE}], "pricing": LIST_PRICE},
        "plain": {"deployments": [{**up, "model": "m-up"}], "pricing": LIST_PRICE},
        "openai/*": {"deployments": [up], "pricing": LIST_PRICE},
    }}
    gw = GatewayProc(tmp, config, env={"UP_KEY": "sk-up"})
    data = tmp / "d.jsonl"
    data.write_text('{"id": "a", "prompt": "hi", "expected": "x"}\n{"id": "b", "prompt": "hello", "expected": "y"}\n')
    yield gw, mock, tmp, data
    gw.stop()
    mock.stop()


def compare(url: str, data: Path, out: Path, models: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "switchboard", "compare", "--models", models, "--data", str(data),
                           "--out", str(out), "--url", url, "-q", *extra], capture_output=True, text=True, timeout=120)


def billed(gw: GatewayProc, model: str) -> list[float]:
    return [row["cost"] for row in gw.requests_logged() if row["model_requested"] == model]


@pytest.mark.parametrize("mode", [[], ["--no-stream"]], ids=["streamed", "not-streamed"])
def test_compare_costs_what_the_gateway_charged(stack, mode):
    gw, _, tmp, data = stack
    before = len(billed(gw, "dual"))
    out = tmp / f"out-charged{len(mode)}"
    proc = compare(gw.url, data, out, "dual", *mode)
    assert proc.returncode == 0, proc.stderr
    charged = wait_for(lambda: billed(gw, "dual")[before:] if len(billed(gw, "dual")) == before + 2 else None)
    assert charged and min(charged) > 0.01  # deployment prices: 10,000x the model's list price
    result = json.loads((out / "results.json").read_text())
    assert result["summaries"][0]["cost_total"] == pytest.approx(sum(charged), rel=1e-6)
    assert result["cost_basis"] == "charged"
    assert "list prices" not in proc.stdout


def test_compare_prices_from_the_list_only_when_not_told_the_charge_and_says_so(stack):
    """A gateway that sends no `x-switchboard-cost` (here: the mock upstream, OpenAI-compatible, as an older
    gateway would be) gets the usage priced at the listed price, and the output says the costs are list prices."""
    _, mock, tmp, data = stack
    proc = compare(mock.url, data, tmp / "out-listed", "m-up")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp / "out-listed" / "results.json").read_text())
    assert result["cost_basis"].startswith("list prices for 2 of 2 answers")
    assert "cost: list prices for 2 of 2 answers" in proc.stdout
    assert "list prices for 2 of 2 answers" in (tmp / "out-listed" / "report.html").read_text()


@pytest.mark.parametrize("models, grader, unknown", [
    ("dual,unknown-model", [], "unknown-model"),
    ("plain", ["--grader", "judge:model=no-such-judge"], "no-such-judge"),
], ids=["compared", "judge"])
def test_compare_refuses_a_model_the_gateway_does_not_serve(stack, models, grader, unknown):
    gw, _, tmp, data = stack
    before = len(gw.requests_logged())
    proc = compare(gw.url, data, tmp / f"out-{unknown}", models, *grader)
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"unknown model {unknown!r}; known: " in lines[0], proc.stderr
    assert "dual" in lines[0] and "plain" in lines[0]
    assert len(gw.requests_logged()) == before, "nothing is asked of the gateway for a typo"


def test_compare_accepts_a_name_only_a_wildcard_covers(stack):
    gw, _, tmp, data = stack
    listed = [m["id"] for m in json.loads(http("GET", gw.url + "/v1/models")[2])["data"]]
    assert "openai/m-up" not in listed, listed
    proc = compare(gw.url, data, tmp / "out-wildcard", "openai/m-up", "--no-stream")
    assert proc.returncode == 0, proc.stderr


def test_shadow_report_refuses_an_unknown_judge(stack):
    gw, _, tmp, _ = stack
    proc = subprocess.run([sys.executable, "-m", "switchboard", "shadow-report", "--db", str(gw.db),
                           "--judge", "no-such-judge", "--url", gw.url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout
    assert "unknown model 'no-such-judge'; known: " in proc.stderr.strip().splitlines()[-1], proc.stderr
