"""Shadow traffic through a running gateway: mirrored after the answer, never delaying it, on its own budget."""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
import time

import openai
import pytest

from support import GatewayProc, MockProc, wait_for

PRIMARY_REPLY = "The primary answer is 42."
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}  # makes each mirror cost about $0.02
BUDGET = 0.5
MAX_IN_FLIGHT = 16


def pairs(db: str) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM shadow_pairs ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shadow")
    mock = MockProc(tmp, {
        "primary-up": {"reply": PRIMARY_REPLY, "latency": 0.05},
        "same-up": {"reply": PRIMARY_REPLY, "latency": 0.25},
        "other-up": {"reply": "Something else entirely: 7.", "latency": 0.25},
        "judge-up": {"reply": "Both are fine. WINNER: TIE"},
    })

    def model(upstream, pricing=None):
        return {"deployments": [{"provider": "openai", "model": upstream, "base_url": mock.url + "/v1"}],
                "pricing": pricing or {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}

    db = str(tmp / "shadow.db")
    config = {
        "models": {"primary": model("primary-up"), "baseline": model("primary-up"),
                   "same": model("same-up", PRICE), "other": model("other-up", PRICE), "judge": model("judge-up")},
        "shadow": {"budget_usd": BUDGET, "max_in_flight": MAX_IN_FLIGHT, "db": db, "seed": 3,
                   "models": {"primary": {"candidates": ["same", "other"], "sample": 1.0}}},
    }
    gw = GatewayProc(tmp, config)
    yield gw, mock, db, tmp
    gw.stop()
    mock.stop()


def test_caller_latency_is_unchanged_and_pairs_are_stored(stack):
    gw, mock, db, _ = stack
    client = openai.OpenAI(api_key="x", base_url=gw.url + "/v1", max_retries=0, timeout=10)
    timings: dict[str, list[float]] = {"primary": [], "baseline": []}
    for i in range(10):
        for name in ("baseline", "primary"):
            t0 = time.perf_counter()
            answer = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": f"Question number {i}: what is six times seven?"}])
            timings[name].append(time.perf_counter() - t0)
            assert answer.choices[0].message.content == PRIMARY_REPLY  # never the candidate's
    p50_primary, p50_base = statistics.median(timings["primary"]), statistics.median(timings["baseline"])
    # The candidates take 250 ms; the caller pays none of it.
    assert p50_primary < p50_base + 0.05, (p50_primary, p50_base)  # inline mirroring would add 250 ms to each
    assert sum(t >= 0.3 for t in timings["primary"]) <= 2, timings["primary"]
    stored = wait_for(lambda: len(pairs(db)) >= 20 and pairs(db), timeout=10)
    assert stored and len(stored) == 20
    assert {p["candidate"] for p in stored} == {"same", "other"}
    p = stored[0]
    assert p["model"] == "primary" and p["primary_response"] == PRIMARY_REPLY and p["error"] is None
    assert p["candidate_ms"] >= 240 and p["primary_ms"] < 200 and p["candidate_cost"] > 0
    # Shadow calls are not the caller's: the request log holds the callers' requests only.
    logged = wait_for(lambda: [r for r in gw.requests_logged() if r["model_requested"] == "primary"], timeout=5)
    assert len(logged) == 10
    assert {r["model_used"] for r in gw.requests_logged()} == {"primary", "baseline"}
    assert mock.stats()["by_model"].get("same-up") == 10


def test_budget_stops_mirroring_and_report_and_export(stack):
    gw, _, db, tmp = stack
    client = openai.OpenAI(api_key="x", base_url=gw.url + "/v1", max_retries=0, timeout=10)
    wait_for(lambda: len(pairs(db)) >= 20, timeout=10)
    for i in range(10, 40):
        client.chat.completions.create(model="primary", messages=[{"role": "user", "content": f"Question {i}: two plus two?"}])
    time.sleep(0.6)  # let the last mirrors land
    stored = pairs(db)
    spend = sum(p["candidate_cost"] for p in stored)
    per_mirror = max(p["candidate_cost"] for p in stored)
    assert spend >= BUDGET, "mirroring went on until the budget was spent"
    assert spend <= BUDGET + MAX_IN_FLIGHT * per_mirror, "and stopped then (overshoot: mirrors in flight only)"
    assert len(stored) < 2 * 40, "later requests were not mirrored"

    export = tmp / "train.jsonl"
    proc = subprocess.run([sys.executable, "-m", "switchboard", "shadow-report", "--db", db, "--json",
                           "--export", str(export), "--judge", "judge", "--url", gw.url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "total shadow spend" in proc.stdout
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    groups = {g["candidate"]: g for g in report["groups"]}
    assert groups["same"]["agreement"] == 1.0 and groups["other"]["agreement"] == 0.0
    assert groups["same"]["ties"] == 1.0  # the judge model always says TIE
    assert groups["same"]["candidate_p50_ms"] > groups["same"]["primary_p50_ms"] + 150
    assert report["shadow_spend_usd"] == pytest.approx(spend)
    assert groups["same"]["candidate_cost_per_1k"] > groups["same"]["primary_cost_per_1k"]

    from switchboard.routing.smart.dataset import load_jsonl

    examples = load_jsonl(export)  # the router trainer's own reader accepts the export
    assert len(examples) == len(stored)
    assert {e.label for e in examples} == {0.5}  # judged ties


def test_agreement_export_without_a_judge(stack):
    _, _, db, tmp = stack
    export = tmp / "agree.jsonl"
    saved = tmp / "shadow-report.json"
    proc = subprocess.run([sys.executable, "-m", "switchboard", "shadow-report", "--db", db, "--candidate", "other",
                           "--grader", "numeric", "--export", str(export), "--out", str(saved)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(saved.read_text())
    assert [g["candidate"] for g in report["groups"]] == ["other"] and report["groups"][0]["agreement"] == 0.0
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert rows and all(r["scores"] == {"strong": 1.0, "weak": 0.0} for r in rows)


def test_bad_shadow_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  a:\n    deployments:\n      - {provider: replay, recordings: x.jsonl}\n"
                   "shadow:\n  models:\n    a:\n      candidates: [nope]\n")
    proc = subprocess.run([sys.executable, "-m", "switchboard", "serve", "--config", str(bad), "--port", "0"],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 2
    assert "shadow.models.a.candidates" in proc.stderr and "'nope'" in proc.stderr and ":8:" in proc.stderr


def test_a_failing_candidate_is_stored_with_its_error_and_a_keys_requests_are_timed(tmp_path):
    from support import http

    mock = MockProc(tmp_path, {"primary-up": {"reply": PRIMARY_REPLY},
                               "down-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]}})
    db = str(tmp_path / "pairs" / "shadow.db")  # its directory is made, as storage.sqlite_path's is
    models = {name: {"deployments": [{"provider": "openai", "model": up, "base_url": mock.url + "/v1"}],
                     "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}, "retries": {"max_attempts": 1}}
              for name, up in (("primary", "primary-up"), ("down", "down-up"))}
    config = {"auth": {"master_key": "${SB_MASTER}"}, "models": models,
              "shadow": {"db": db, "models": {"primary": {"candidates": ["down"], "sample": 1.0}}}}
    gw = GatewayProc(tmp_path, config, env={"SB_MASTER": "sk-shadow-master-0123456789"})
    try:
        status, _, raw = http("POST", gw.url + "/admin/keys", {"name": "app", "credits_usd": 5},
                              {"authorization": "Bearer sk-shadow-master-0123456789"})
        assert status == 201, raw
        client = openai.OpenAI(api_key=json.loads(raw)["key"], base_url=gw.url + "/v1", max_retries=0, timeout=10)
        assert client.chat.completions.create(model="primary", messages=[{"role": "user", "content": "hi"}])
        stored = wait_for(lambda: pairs(db), timeout=10)
        assert len(stored) == 1 and stored[0]["error"] and stored[0]["candidate_cost"] == 0
        assert stored[0]["primary_ms"] is not None and stored[0]["primary_ms"] > 0
    finally:
        gw.stop()
        mock.stop()
