"""POST /v1/feedback on logged requests becomes router training data that `switchboard router train` reads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-feedback-master-000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feedback")
    mock = MockProc(tmp, {"wc": {"reply": "one two three four", "faults": [{"kind": "cut", "after_chunks": 2}]}})
    dep = {"provider": "openai", "base_url": mock.url + "/v1"}
    config = {"auth": {"master_key": "${SB_MASTER}"}, "storage": {"store_prompts": True},
              "models": {"weak": {"deployments": [{**dep, "model": "w"}],
                                  "pricing": {"input_per_mtok": 1, "output_per_mtok": 2}},
                         "weak-cut": {"deployments": [{**dep, "model": "wc"}]},
                         "strong": {"deployments": [{**dep, "model": "s"}],
                                    "pricing": {"input_per_mtok": 10, "output_per_mtok": 30}},
                         # priced only per deployment (no model price, none in the catalog), one dearer
                         "strong-priced-per-deployment": {"deployments": [
                             {**dep, "model": "s", "pricing": {"input_per_mtok": 10, "output_per_mtok": 30}},
                             {**dep, "model": "s", "pricing": {"input_per_mtok": 20, "output_per_mtok": 60}}]}},
              "routers": {"auto": {"strong": "strong", "weak": "weak", "threshold": 1.0},
                          "auto-deployment-priced": {"strong": "strong-priced-per-deployment", "weak": "weak"},
                          "auto-cut": {"strong": "strong", "weak": "weak-cut", "threshold": 1.0}}}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER})
    yield gw, tmp
    gw.stop()
    mock.stop()


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory):
    """A gateway that stores in Postgres (a private schema, dropped afterwards), where writers race for real."""
    from test_replicas import PG_URL, pg_query, require_services

    require_services()
    tmp = tmp_path_factory.mktemp("feedback-pg")
    schema = f"sbtest_{uuid.uuid4().hex[:10]}"
    mock = MockProc(tmp)
    dep = {"provider": "openai", "base_url": mock.url + "/v1"}
    config = {"auth": {"master_key": "${SB_MASTER}"},
              "storage": {"database_url": "${SB_DB}", "log_flush_seconds": 0.05},
              "models": {"weak": {"deployments": [{**dep, "model": "w"}]},
                         "strong": {"deployments": [{**dep, "model": "s"}]}},
              "routers": {"auto": {"strong": "strong", "weak": "weak", "threshold": 1.0}}}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "SB_DB": f"{PG_URL}?search_path={schema}"})
    yield gw
    gw.stop()
    mock.stop()
    asyncio.run(pg_query(PG_URL, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def rate(gw, rating: dict) -> tuple[int, dict]:
    status, _, body = http("POST", gw.url + "/v1/feedback", rating, headers={"authorization": f"Bearer {MASTER}"})
    return status, json.loads(body)


def test_ratings_of_one_request_sent_at_once_all_land_and_one_is_kept(pg_stack):
    gw = pg_stack
    client = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0)
    for _ in range(5):
        rid = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "a question"}]).headers["x-request-id"]
        assert rate(gw, {"request_id": rid, "rating": "good", "prompt": "a question"})[0] == 200
        # a double click, a retry: each replaces the rating (two of them at once were a 500, a duplicate key)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: rate(gw, {"request_id": rid, "score": i / 7, "prompt": "a question"}),
                                    range(8)))
        assert [status for status, _ in answers] == [200] * 8, answers
    _, _, body = http("GET", gw.url + "/admin/feedback/export", headers={"authorization": f"Bearer {MASTER}"})
    assert len(body.decode().splitlines()) == 5


def test_a_request_can_be_rated_as_soon_as_its_answer_is_in(pg_stack):
    gw = pg_stack
    client = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0)

    def ask(i: int) -> str:
        return client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": f"question {i}"}]).headers["x-request-id"]

    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(ask, range(16)))
            # rated at once, as a page of answers with a thumbs-up each: one rating's wait for the request log
            # must not end while another's write of it is under way (it did: 404, "No logged request")
            answers = list(pool.map(lambda rid: rate(gw, {"request_id": rid, "rating": "good", "prompt": "q"}), ids))
        assert [status for status, _ in answers] == [200] * 16, answers


def test_feedback_round_trip_to_training(stack):
    gw, tmp = stack
    client = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0)
    auth = {"authorization": f"Bearer {MASTER}"}
    ids = []
    for i in range(40):
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": f"question number {i}: " + ("prove " * (i % 5))}])
        assert raw.headers["x-switchboard-routed-to"] == "weak"
        ids.append(raw.headers["x-request-id"])
    for i, rid in enumerate(ids):
        status, _, body = http("POST", gw.url + "/v1/feedback", {"request_id": rid, "rating": "bad" if i % 2 else "good"},
                               headers=auth)
        assert status == 200 and json.loads(body)["usable_for_training"] is True
    # Bad input gets a clear error.
    status, _, body = http("POST", gw.url + "/v1/feedback", {"request_id": ids[0], "score": 3}, headers=auth)
    assert status == 400 and json.loads(body)["error"]["param"] == "score"
    status, _, body = http("POST", gw.url + "/v1/feedback", {"request_id": "req_nope", "score": 1}, headers=auth)
    assert status == 404
    status, _, body = http("POST", gw.url + "/v1/feedback", {"request_id": ids[0], "score": 1})
    assert status == 401
    # a rating the export cannot use says so: this request was not routed
    raw = client.chat.completions.with_raw_response.create(model="weak", messages=[{"role": "user", "content": "x"}])
    status, _, body = http("POST", gw.url + "/v1/feedback", {"request_id": raw.headers["x-request-id"],
                                                             "rating": "good"}, headers=auth)
    assert status == 200 and json.loads(body)["usable_for_training"] is False
    # nor can a rating of an answer cut off mid-stream: it says nothing of what the weak model would have written
    raw = client.chat.completions.with_raw_response.create(model="auto-cut", stream=True,
                                                           messages=[{"role": "user", "content": "question cut"}])
    with pytest.raises(openai.APIError):
        list(raw.parse())
    status, _, body = http("POST", gw.url + "/v1/feedback", {"request_id": raw.headers["x-request-id"],
                                                             "rating": "good"}, headers=auth)
    assert status == 200 and json.loads(body)["usable_for_training"] is False
    status, _, body = http("GET", gw.url + "/admin/feedback/export", headers=auth)
    assert status == 200
    examples = [json.loads(line) for line in body.decode().splitlines()]
    assert len(examples) == 40
    assert {e["winner"] for e in examples} == {"weak", "strong"}
    assert all(e["prompt"].startswith("question number") for e in examples)
    data = tmp / "feedback.jsonl"
    data.write_bytes(body)
    out = tmp / "mine.npz"
    result = subprocess.run([sys.executable, "-m", "switchboard", "router", "train", "--data", str(data), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from switchboard.routing.smart import load_router

    router = load_router(out)
    assert 0.0 <= router.score("question number 3: prove prove prove") <= 1.0
    # The stored weak answers come along, so the same export trains the cascade's verifier.
    assert all(e["weak_answer"].startswith("This is a simulated reply from w") for e in examples)
    verifier_file = tmp / "verifier.npz"
    result = subprocess.run([sys.executable, "-m", "switchboard", "router", "train", "--kind", "verifier",
                             "--data", str(data), "--out", str(verifier_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    verifier = load_router(verifier_file)
    assert type(verifier).__name__ == "VerifierRouter"
    assert 0.0 <= verifier.score_answer("question number 3: prove", examples[3]["weak_answer"]) <= 1.0


def test_usage_shows_strong_weak_split_and_saving(stack):
    gw, _ = stack
    client = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0)
    for threshold in ("0", "1", "1"):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "a question"}],
                                       extra_headers={"x-switchboard-threshold": threshold})
    status, _, body = http("GET", gw.url + "/admin/usage?group_by=model", headers={"authorization": f"Bearer {MASTER}"})
    split = json.loads(body)["routers"][0]
    assert status == 200 and split["router"] == "auto" and split["strong"] >= 1 and split["weak"] >= 2
    assert split["cost_if_strong"] > split["cost"] > 0 and split["saving"] > 0
    out = subprocess.run([sys.executable, "-m", "switchboard", "usage", "--url", gw.url, "--admin-key", MASTER, "--by", "model"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "router auto:" in out.stdout and "all-strong" in out.stdout


def test_the_saving_prices_a_strong_model_priced_per_deployment_at_what_its_calls_cost(stack):
    gw, _ = stack
    client = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0)
    served = {}
    for threshold in ("0", "1"):
        raw = client.chat.completions.with_raw_response.create(
            model="auto-deployment-priced", messages=[{"role": "user", "content": "a question"}],
            extra_headers={"x-switchboard-threshold": threshold})
        served[raw.headers["x-switchboard-routed-to"]] = raw.headers["x-request-id"]
    assert set(served) == {"strong-priced-per-deployment", "weak"}
    rows = wait_for(lambda: {r["request_id"]: r for r in gw.requests_logged() if r["request_id"] in served.values()}
                    if len(served) == 2 else None)
    strong_row, weak_row = rows[served["strong-priced-per-deployment"]], rows[served["weak"]]
    # what the strong answer cost is what all-strong costs for it (this was $0: the model itself has no price)
    assert strong_row["cost"] > 0
    assert json.loads(strong_row["extra"])["cost_if_strong"] == pytest.approx(strong_row["cost"])
    # the weak answer's tokens at the cheaper strong deployment's price: the saving is never overstated
    cheapest = (weak_row["prompt_tokens"] * 10 + weak_row["completion_tokens"] * 30) / 1e6
    assert cheapest > weak_row["cost"]
    assert json.loads(weak_row["extra"])["cost_if_strong"] == pytest.approx(cheapest)
    status, _, body = http("GET", gw.url + "/admin/usage", headers={"authorization": f"Bearer {MASTER}"})
    split = next(r for r in json.loads(body)["routers"] if r["router"] == "auto-deployment-priced")
    assert split["saving"] > 0 and split["cost_if_strong"] == pytest.approx(strong_row["cost"] + cheapest)
