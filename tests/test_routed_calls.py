"""A routed request's calls beyond the first: a cascade's judge and strong calls are admitted and accounted like
the first (the strong model's own limits, a credit hold that covers every call, the calls of a failed cascade kept
in the log), and a weak model that is down hands the request to the strong one. Real gateway, mock upstream,
OpenAI SDK, SQLite."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest
from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-cascade-accounts-master-0123"
ADMIN = {"authorization": f"Bearer {MASTER}"}
REPLY = "abcdefghij abcdefghij abcdefghij abcdefg"  # 10 tokens to the mock
PRICING = {"input_per_mtok": 10_000.0, "output_per_mtok": 20_000.0}  # 1 cent per prompt token, 2 per completion
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cascade-accounting")
    mock = MockProc(tmp, {"plain-up": {"reply": REPLY}, "quiet-up": {"reply": REPLY, "report_usage": False},
                          "yes-up": {"reply": "YES"}, "bold-yes-up": {"reply": "**Yes.**"},
                          "yesterday-up": {"reply": "Yesterday's answer"},
                          "down-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]}})

    def model(upstream):
        return {"deployments": [{"provider": "openai", "model": upstream, "base_url": mock.url + "/v1"}],
                "pricing": PRICING, "retries": {"max_per_model": 1}}

    always_weak = {"threshold": 1.0}  # every prompt scores below 1: the cascade runs on each request
    config = {
        "auth": {"master_key": "${SB_MASTER}"}, "storage": {"log_flush_seconds": 0.05},
        "accounts": {"model_limits": {"strong-capped": {"rpm": 2}, "strong-capped-too": {"rpm": 2},
                                      "weak-capped": {"rpm": 1}}},
        "models": {"weak": model("plain-up"), "strong": model("plain-up"),
                   "strong-capped": model("plain-up"), "strong-capped-too": model("plain-up"),
                   "weak-capped": model("plain-up"), "down": model("down-up"),
                   "quiet": model("quiet-up"), "judge-yes": model("yes-up"),
                   "judge-bold-yes": model("bold-yes-up"), "judge-yesterday": model("yesterday-up")},
        "routers": {
            "escalating": {"strong": "strong-capped", "weak": "weak", **always_weak,
                           "cascade": {"check": "regex", "pattern": "^never"}},
            # every prompt scores at or above 0: a cascade asks the weak model first all the same
            "escalating-over-the-threshold": {"strong": "strong-capped-too", "weak": "weak", "threshold": 0.0,
                                              "cascade": {"check": "regex", "pattern": "^never"}},
            "accepting-over-the-threshold": {"strong": "strong", "weak": "weak-capped", "threshold": 0.0,
                                             "cascade": {"check": "regex", "pattern": "^abc"}},
            "escalating-2": {"strong": "strong", "weak": "weak", **always_weak,
                             "cascade": {"check": "regex", "pattern": "^never"}},
            "judged-by-a-broken-judge": {"strong": "strong", "weak": "weak", **always_weak,
                                         "cascade": {"check": "judge", "judge_model": "down"}},
            "escalating-to-a-down-strong": {"strong": "down", "weak": "weak", **always_weak,
                                            "cascade": {"check": "regex", "pattern": "^never"}},
            "routed-to-a-down-weak": {"strong": "strong", "weak": "down", **always_weak},
            "cascading-from-a-down-weak": {"strong": "strong", "weak": "down", **always_weak,
                                           "cascade": {"check": "json"}},
            "judged-and-accepted": {"strong": "strong", "weak": "weak", **always_weak,
                                    "cascade": {"check": "judge", "judge_model": "judge-yes"}},
            "judged-bold-yes": {"strong": "strong", "weak": "weak", **always_weak,
                                "cascade": {"check": "judge", "judge_model": "judge-bold-yes"}},
            "judged-yesterday": {"strong": "strong", "weak": "weak", **always_weak,
                                 "cascade": {"check": "judge", "judge_model": "judge-yesterday"}},
            "json-checked": {"strong": "strong", "weak": "weak", **always_weak, "cascade": {"check": "json"}},
            "escalating-quietly": {"strong": "quiet", "weak": "quiet", **always_weak,
                                   "cascade": {"check": "regex", "pattern": "^never"}},
        }}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER})
    yield gw, mock
    gw.stop()
    mock.stop()


def new_key(gw, **fields) -> tuple[str, openai.OpenAI]:
    status, _, raw = http("POST", gw.url + "/admin/keys", fields, ADMIN)
    assert status == 201, raw
    data = json.loads(raw)
    return data["id"], openai.OpenAI(api_key=data["key"], base_url=gw.url + "/v1", max_retries=0, timeout=10)


def logged(gw, request_id):
    return wait_for(lambda: next((r for r in gw.requests_logged() if r["request_id"] == request_id), None))


def test_an_escalation_counts_against_the_strong_models_own_limit(stack):
    gw, mock = stack
    _, client = new_key(gw)
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="escalating", max_tokens=10, messages=HI)
        assert raw.headers["x-switchboard-cascade"] == "escalated"
        assert raw.headers["x-switchboard-routed-to"] == "strong-capped"
    # `strong-capped` allows 2 requests a minute; the third escalation is refused, although the weak model is free
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="escalating", max_tokens=10, messages=HI)
    assert "strong-capped" in err.value.message
    assert client.chat.completions.create(model="weak", max_tokens=10, messages=HI).choices[0].message.content


def test_a_cascade_is_admitted_for_the_calls_it_makes_whatever_the_prompts_score(stack):
    gw, mock = stack
    _, client = new_key(gw)
    # a score at or above the threshold does not skip the weak call: one escalation is one strong call, so
    # `strong-capped-too` (2 a minute) takes two of them (it counted each twice, the decision's and the escalation's)
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="escalating-over-the-threshold", max_tokens=10,
                                                               messages=HI)
        assert raw.headers["x-switchboard-cascade"] == "escalated"
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="escalating-over-the-threshold", max_tokens=10, messages=HI)
    assert "strong-capped-too" in err.value.message
    # and the weak model's own limit counts the weak call (it was not counted at all)
    raw = client.chat.completions.with_raw_response.create(model="accepting-over-the-threshold", max_tokens=10,
                                                           messages=HI)
    assert raw.headers["x-switchboard-cascade"] == "accepted" and raw.headers["x-switchboard-model"] == "weak-capped"
    weak_calls = mock.stats()["by_model"]["plain-up"]
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="accepting-over-the-threshold", max_tokens=10, messages=HI)
    assert "weak-capped" in err.value.message and mock.stats()["by_model"]["plain-up"] == weak_calls


def test_the_credit_hold_covers_every_call_a_cascade_may_make(stack):
    gw, _ = stack
    _, client = new_key(gw, credits_usd=0.5)
    # one call may cost up to $0.30 (10 output tokens at 2 cents, the prompt at 1 cent a token, padded)...
    assert client.chat.completions.create(model="weak", max_tokens=10, messages=HI).choices[0].message.content
    # ... a cascade may make two: the hold is for both, so $0.29 left is not enough
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="escalating-2", max_tokens=10, messages=HI)
    assert err.value.status_code == 402 and "may cost up to $0.6000" in err.value.message


def test_a_failed_cascade_logs_the_calls_it_made_and_charges_nothing(stack):
    gw, mock = stack
    key_id, client = new_key(gw, credits_usd=5.0)
    weak_calls = mock.stats()["by_model"].get("plain-up", 0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.with_raw_response.create(model="escalating-to-a-down-strong", max_tokens=10,
                                                         messages=HI)
    assert err.value.status_code == 502
    assert mock.stats()["by_model"]["plain-up"] == weak_calls + 1  # the weak model did answer
    row = logged(gw, err.value.response.headers["x-request-id"])
    cascade = json.loads(row["extra"])["cascade"]
    assert row["status"] == 502 and cascade["failed"] is True
    assert [c["role"] for c in cascade["calls"]] == ["weak"] and cascade["calls"][0]["cost"] == pytest.approx(0.21)
    assert row["prompt_tokens"] + row["completion_tokens"] == 11 and row["cost"] == 0
    _, _, raw = http("GET", gw.url + f"/admin/keys/{key_id}", None, ADMIN)
    credit = json.loads(raw)["credit"]
    assert credit["balance_usd"] == pytest.approx(5.0) and credit["reserved_usd"] == 0


def test_a_judge_that_is_down_fails_the_check_and_the_strong_model_answers(stack):
    gw, mock = stack
    key_id, client = new_key(gw, credits_usd=5.0)
    raw = client.chat.completions.with_raw_response.create(model="judged-by-a-broken-judge", max_tokens=10,
                                                           messages=HI)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-cascade"] == "escalated" and raw.headers["x-switchboard-routed-to"] == "strong"
    row = logged(gw, raw.headers["x-request-id"])
    cascade = json.loads(row["extra"])["cascade"]
    assert row["status"] == 200 and cascade["escalated"] is True and cascade["check"].startswith("judge failed")
    calls = [(c["role"], c.get("error")) for c in cascade["calls"]]
    assert calls == [("weak", None), ("judge", "upstream_server_error"), ("strong", None)]
    assert row["cost"] == pytest.approx(2 * 0.21)  # the weak and the strong answer; the judge's call failed
    _, _, body = http("GET", gw.url + f"/admin/keys/{key_id}", None, ADMIN)
    assert json.loads(body)["credit"]["balance_usd"] == pytest.approx(5.0 - 2 * 0.21)
    # streamed, the usage chunk carries the whole charge, as every stream's does
    chunks = list(client.chat.completions.create(model="judged-by-a-broken-judge", max_tokens=10, messages=HI,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.model_extra["cost"] == pytest.approx(2 * 0.21)
    # two answers cost more than the strong one alone: the report says so, not "saved $-0.21"
    out = subprocess.run([sys.executable, "-m", "switchboard", "usage", "--url", gw.url, "--admin-key", MASTER,
                          "--key", key_id], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(s for s in out.stdout.splitlines() if s.startswith("router judged-by-a-broken-judge:"))
    assert line.endswith("all-strong: cost $0.420000 more (100%)"), line


def test_a_cascades_calls_are_counted_locally_when_the_upstream_reports_no_usage(stack):
    from switchboard.accounting.tokens import count_tokens, estimate_tokens

    gw, _ = stack
    _, client = new_key(gw)
    prompt = "hello " * 12  # 12 tokens; the four-characters-a-token estimate would say 18
    assert count_tokens(prompt, "quiet-up")[0] != estimate_tokens(prompt)
    raw = client.chat.completions.with_raw_response.create(model="escalating-quietly", max_tokens=10,
                                                           messages=[{"role": "user", "content": prompt}])
    assert raw.headers["x-switchboard-cascade"] == "escalated"
    row = logged(gw, raw.headers["x-request-id"])
    assert json.loads(row["extra"])["usage_counted"] is True
    assert row["prompt_tokens"] == 2 * count_tokens(prompt, "quiet-up")[0]  # the weak call and the strong one
    assert row["completion_tokens"] == 2 * count_tokens(REPLY, "quiet-up")[0]


@pytest.mark.parametrize("stream", [False, True])
def test_the_json_check_reads_a_schemas_required_keys_and_survives_a_malformed_list(stack, stream):
    gw, _ = stack
    _, client = new_key(gw)

    def cascade(required) -> str:
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": required}
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        raw = client.chat.completions.with_raw_response.create(model="json-checked", messages=HI,
                                                               response_format=fmt, stream=stream)
        raw.parse()
        return raw.headers["x-switchboard-cascade"]

    # the mock answers with the schema's properties, {"answer": ...}: a required key it lacks fails the check
    assert cascade(["answer"]) == "accepted" and cascade(["a"]) == "escalated"
    # not a list of names: nothing to check beyond valid JSON (this was a 500)
    assert cascade(5) == "accepted" and cascade([["a"]]) == "accepted"


def test_a_weak_model_that_is_down_hands_its_requests_to_the_strong_one(stack):
    gw, mock = stack
    _, client = new_key(gw, credits_usd=5.0)
    raw = client.chat.completions.with_raw_response.create(model="routed-to-a-down-weak", max_tokens=10, messages=HI)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-routed-to"] == "down" and raw.headers["x-switchboard-model"] == "strong"
    row = logged(gw, raw.headers["x-request-id"])
    assert [f["to"] for f in json.loads(row["extra"])["fallbacks"]] == ["strong"] and row["cost"] == pytest.approx(0.21)
    stream = client.chat.completions.create(model="routed-to-a-down-weak", max_tokens=10, messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == REPLY
    # in a cascade, a weak model that cannot answer fails the check
    raw = client.chat.completions.with_raw_response.create(model="cascading-from-a-down-weak", max_tokens=10,
                                                           messages=HI)
    assert raw.parse().choices[0].message.content == REPLY and raw.headers["x-switchboard-cascade"] == "escalated"
    cascade = json.loads(logged(gw, raw.headers["x-request-id"])["extra"])["cascade"]
    assert cascade["check"].startswith("weak model failed")
    assert [c["role"] for c in cascade["calls"]] == ["weak", "strong"]


@pytest.mark.parametrize("router, verdict", [("judged-bold-yes", "accepted"), ("judged-yesterday", "escalated")])
def test_a_judges_yes_is_read_as_a_word_whatever_its_markup(stack, router, verdict):
    gw, _ = stack
    _, client = new_key(gw)
    raw = client.chat.completions.with_raw_response.create(model=router, max_tokens=10, messages=HI)
    raw.parse()
    assert raw.headers["x-switchboard-cascade"] == verdict  # "**Yes.**" is a yes; "Yesterday..." is none


@pytest.mark.parametrize("stream", [False, True])
def test_a_judged_answer_that_is_accepted_is_served_by_the_weak_model_not_the_judge(stack, stream):
    gw, _ = stack
    _, client = new_key(gw)
    raw = client.chat.completions.with_raw_response.create(model="judged-and-accepted", max_tokens=10, messages=HI,
                                                           stream=stream)
    raw.parse()
    assert raw.headers["x-switchboard-cascade"] == "accepted" and raw.headers["x-switchboard-routed-to"] == "weak"
    # the judge ran last, but the answer is the weak model's: that is who served it (this named the judge)
    assert raw.headers["x-switchboard-model"] == "weak" and raw.headers["x-switchboard-deployment"] == "weak#0"
    row = logged(gw, raw.headers["x-request-id"])
    assert row["model_used"] == "weak" and row["deployment"] == "weak#0"
    assert [c["role"] for c in json.loads(row["extra"])["cascade"]["calls"]] == ["weak", "judge"]
    # so the routing split counts it as weak, and a rating of it is router training data
    _, _, body = http("GET", gw.url + "/admin/usage", None, ADMIN)
    split = next(r for r in json.loads(body)["routers"] if r["router"] == "judged-and-accepted")
    assert split["weak"] >= 1 and split["other"] == 0, split
    status, _, body = http("POST", gw.url + "/v1/feedback", {"request_id": row["request_id"], "rating": "good",
                                                            "prompt": "hi"}, ADMIN)
    assert status == 200 and json.loads(body)["usable_for_training"] is True


def test_a_usage_report_for_one_key_splits_only_that_keys_routed_requests(stack):
    gw, _ = stack
    busy_id, busy = new_key(gw, team="routing-busy")
    idle_id, _ = new_key(gw, team="routing-idle")
    busy.chat.completions.create(model="json-checked", max_tokens=10, messages=HI)
    wait_for(lambda: any(r["key_id"] == busy_id for r in gw.requests_logged()))

    def split(query: str) -> dict[str, dict]:
        status, _, body = http("GET", gw.url + "/admin/usage?" + query, None, ADMIN)
        assert status == 200, body
        return {r["router"]: r for r in json.loads(body)["routers"]}

    # the data rows honoured the filter; the routing split and saving were those of every key
    assert split(f"key={busy_id}")["json-checked"]["requests"] == 1
    assert all(r["requests"] == 0 and r["cost"] == 0 for r in split(f"key={idle_id}").values())
    assert split("team=routing-busy")["json-checked"]["requests"] == 1
    assert all(r["requests"] == 0 for r in split("team=routing-idle").values())
    assert split("key=" + busy_id + "&model=strong")["json-checked"]["requests"] == 1  # escalated: strong served it
    assert split("key=" + busy_id + "&model=weak")["json-checked"]["requests"] == 0
