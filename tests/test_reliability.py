"""Reliability mechanisms one by one: hedging, Retry-After, strategies, timeouts, deadline, metrics, shared breakers."""

from __future__ import annotations

import collections
import json
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-rel-master-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliability")
    mock = MockProc(tmp, {
        "slow-up": {"reply": "slow here", "latency": 1.0},
        "fast-up": {"reply": "fast here"},
        "storm-up": {"reply": "storm here", "faults": [{"kind": "status", "status": 429, "rate": 1.0, "retry_after": 2}]},
        "downpour-up": {"faults": [{"kind": "status", "status": 429, "rate": 1.0, "retry_after": 3}]},
        "lr-a-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
        "lr-b-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
        "calm-up": {"reply": "calm here"},
        "lat-slow-up": {"reply": "lat-slow", "latency": 0.05},
        "lat-fast-up": {"reply": "lat-fast"},
        "cheap-up": {"reply": "cheap"},
        "pricey-up": {"reply": "pricey"},
        "limited-up": {"reply": "limited"},
        "spare-up": {"reply": "spare"},
        "stuck-up": {"faults": [{"kind": "hang", "rate": 1.0}]},
        "late-up": {"reply": "late", "ttft": 2.0},
        "quick-up": {"reply": "quick"},
        "refuse-up": {"faults": [{"kind": "status", "status": 400, "rate": 1.0,
                                  "message": "Your request was rejected by our content management policy."}]},
        "lenient-up": {"reply": "lenient"},
        "breaks-up": {"reply": "one two three four five", "faults": [{"kind": "cut", "after_chunks": 2}]},
        "ratio-breaks-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
        "probed-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
        "errs-first-up": {"reply": "never sent", "faults": [{"kind": "error", "status": 503, "after_chunks": 0}]},
        "errs-later-up": {"reply": "one two three four five", "faults": [{"kind": "error", "status": 529,
                                                                          "after_chunks": 3}]},
        "steady-up": {"reply": "steady here"},
        "unpaid-up": {"faults": [{"kind": "status", "status": 402, "message": "Your credit balance is too low"}]},
        "empty-stream-up": {"faults": [{"kind": "empty"}]},
        "endless-wait-up": {"faults": [{"kind": "status", "status": 429, "retry_after": "1e400"}]},
        # an error event right after the role: Claude's message_start, an OpenAI-format server's role-only chunk
        "overloaded-at-start-up": {"reply": "never sent", "faults": [{"kind": "error", "status": 529,
                                                                      "after_chunks": 1}]},
        "errs-after-role-up": {"reply": "never sent", "faults": [{"kind": "error", "status": 503,
                                                                  "after_chunks": 1}]},
        "down-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}], "latency": 0.3},
        "dead-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
        "backup-up": {"reply": "backup here"},
        "slowpoke-up": {"reply": "eventually", "latency": 3.0},
    })
    base = mock.url + "/v1"

    def dep(upstream, **extra):
        return {"provider": "openai", "model": upstream, "base_url": base, "id": upstream.removesuffix("-up"), **extra}

    config = {
        "auth": {"master_key": "${SB_MASTER}"},
        "storage": {"log_flush_seconds": 0.05},
        # max_attempts and max_per_model keep their defaults
        "reliability": {"retries": {"backoff_base": 0.01, "backoff_max": 0.05}},
        "models": {
            "hedged": {"deployments": [dep("slow-up"), dep("fast-up")], "strategy": "ordered",
                       "hedge": {"delay": 0.1}},
            "stormy": {"deployments": [dep("storm-up"), dep("calm-up")], "strategy": "ordered"},
            "downpour": {"deployments": [dep("downpour-up")]},
            "lr-a": {"deployments": [dep("lr-a-up")], "breaker": {"failures": 1, "cooldown": 60},
                     "fallbacks": ["lr-b"]},
            "lr-b": {"deployments": [dep("lr-b-up")], "breaker": {"failures": 1, "cooldown": 60}},
            "lat": {"deployments": [dep("lat-slow-up"), dep("lat-fast-up")], "strategy": "latency"},
            "cost": {"deployments": [dep("pricey-up", pricing={"input_per_mtok": 5, "output_per_mtok": 15}),
                                     dep("cheap-up", pricing={"input_per_mtok": 0.1, "output_per_mtok": 0.4})],
                     "strategy": "cost"},
            "rpm": {"deployments": [dep("limited-up", rpm=2, weight=1000), dep("spare-up", weight=0.001)]},
            "stuck": {"deployments": [dep("stuck-up", timeouts={"read": 5})], "retries": {"deadline": 0.4}},
            "ttft": {"deployments": [dep("late-up", timeouts={"ttft": 0.3}), dep("quick-up")], "strategy": "ordered"},
            "refuse": {"deployments": [dep("refuse-up")], "content_policy_fallbacks": ["lenient"]},
            "lenient": {"deployments": [dep("lenient-up")]},
            # the ratio rule out of the way: only consecutive failures open these breakers
            "breaks": {"deployments": [dep("breaks-up")], "retries": {"max_attempts": 1},
                       "breaker": {"failures": 3, "failure_ratio": 1.0, "min_requests": 100, "cooldown": 60}},
            # only the ratio rule opens this one
            "ratio-breaks": {"deployments": [dep("ratio-breaks-up")], "retries": {"max_attempts": 1},
                             "breaker": {"failures": 100, "failure_ratio": 0.5, "min_requests": 2, "cooldown": 1}},
            "errs-first": {"deployments": [dep("errs-first-up"), dep("steady-up")], "strategy": "ordered"},
            "errs-later": {"deployments": [{"provider": "anthropic", "model": "errs-later-up", "base_url": mock.url,
                                            "api_key": "${UP_KEY}", "id": "errs-later"}, dep("steady-up")],
                           "strategy": "ordered"},
            "overloaded-at-start": {"deployments": [
                {"provider": "anthropic", "model": "overloaded-at-start-up", "base_url": mock.url,
                 "api_key": "${UP_KEY}", "id": "overloaded-at-start"}, dep("steady-up")], "strategy": "ordered"},
            "unpaid-then-steady": {"deployments": [dep("unpaid-up"), dep("steady-up")], "strategy": "ordered"},
            "unpaid": {"deployments": [dep("unpaid-up")], "retries": {"max_attempts": 3, "max_per_model": 3}},
            "unpaid-claude": {"deployments": [{"provider": "anthropic", "model": "unpaid-up", "base_url": mock.url,
                                               "api_key": "${UP_KEY}"}],
                              "retries": {"max_attempts": 3, "max_per_model": 3}},
            "empty-stream": {"deployments": [dep("empty-stream-up"), dep("steady-up")], "strategy": "ordered"},
            "endless-wait": {"deployments": [dep("endless-wait-up"), dep("steady-up")], "strategy": "ordered"},
            "errs-after-role": {"deployments": [dep("errs-after-role-up"), dep("steady-up")], "strategy": "ordered"},
            "probed": {"deployments": [dep("probed-up")], "retries": {"max_attempts": 1},
                       "breaker": {"failures": 1, "cooldown": 0.5}},
            "down": {"deployments": [dep("down-up")], "retries": {"max_attempts": 1},
                     "breaker": {"failures": 2, "failure_ratio": 1.0, "min_requests": 100, "cooldown": 1.5}},
            "primary": {"deployments": [dep("dead-up")], "fallbacks": ["backup"]},
            "backup": {"deployments": [dep("backup-up")]},
            "slowpoke": {"deployments": [dep("slowpoke-up")]},
        },
    }
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "UP_KEY": "up-key"})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    return openai.OpenAI(api_key=MASTER, base_url=stack[0].url + "/v1", max_retries=0, timeout=20)


def ask(client, model, content="hello", **kw):
    return client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": content}],
                                                            **kw)


def metric(gw, name: str, **labels) -> float | None:
    _, _, body = http("GET", gw.url + "/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.decode().splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def row_of(gw, request_id: str) -> dict:
    rows = wait_for(lambda: [r for r in gw.requests_logged() if r["request_id"] == request_id], timeout=5)
    assert rows, request_id
    return rows[0]


def test_hedged_request_second_attempt_wins_and_loser_is_cancelled_unbilled(stack, client):
    gw, mock = stack
    before = mock.stats()
    t0 = time.perf_counter()
    raw = ask(client, "hedged")
    elapsed = time.perf_counter() - t0
    assert raw.parse().choices[0].message.content == "fast here"
    assert elapsed < 0.8, elapsed
    assert raw.headers["x-switchboard-deployment"] == "fast"
    assert raw.headers["x-switchboard-attempts"] == "2"
    row = row_of(gw, raw.headers["x-request-id"])
    extra = json.loads(row["extra"])
    assert extra["hedged"] == {"winner": "fast", "loser": "slow"}
    assert sorted((a["deployment"], a["error"]) for a in extra["attempts"]) == [("fast", None), ("slow", "cancelled")]
    # The loser's connection was closed: the slow upstream never finished (never billed) it.
    time.sleep(1.2)
    after = mock.stats()
    print(f"\nhedge: answered in {elapsed:.2f}s; upstream completed {after['completed'] - before['completed']} "
          f"of {sum(after['by_model'].values()) - sum(before['by_model'].values())} started")
    assert after["completed"] - before["completed"] == 1
    assert row["prompt_tokens"] + row["completion_tokens"] == (after["prompt_tokens"] + after["completion_tokens"]
                                                               - before["prompt_tokens"] - before["completion_tokens"])
    # Streams hedge too (until the first chunk).
    stream = client.chat.completions.create(model="hedged", stream=True, messages=[{"role": "user", "content": "s"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "fast here"
    assert (metric(gw, "switchboard_hedges_total", model="hedged", winner="hedge") or 0) >= 2


def test_429_retry_after_cools_the_deployment_down(stack, client):
    gw, mock = stack
    hits = lambda: mock.stats()["by_model"].get("storm-up", 0)
    first = ask(client, "stormy")
    assert first.parse().choices[0].message.content == "calm here"
    assert first.headers["x-switchboard-attempts"] == "2"
    then = [ask(client, "stormy").headers["x-switchboard-attempts"] for _ in range(5)]
    assert then == ["1"] * 5, "the 429'd deployment is skipped while its Retry-After runs"
    assert hits() == 1
    assert metric(gw, "switchboard_breaker_state", deployment="storm") == 2.0
    time.sleep(2.1)
    ask(client, "stormy")
    assert hits() == 2, "after Retry-After the deployment is probed again"


def test_a_503_while_every_deployment_waits_out_a_retry_after_says_how_long(stack, client):
    with pytest.raises(openai.RateLimitError):
        ask(client, "downpour")  # the upstream's 429 (Retry-After: 3) opens the only deployment's breaker
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "downpour")  # nothing to try: a 503 that tells the client when to come back
    assert info.value.status_code == 503 and 1 <= int(info.value.response.headers["retry-after"]) <= 3


def test_a_last_resort_answer_from_the_model_asked_for_is_not_reported_as_a_fallback(stack, client):
    gw, mock = stack
    with pytest.raises(openai.APIStatusError):
        ask(client, "lr-a")  # lr-a fails, its fallback lr-b fails: both breakers open
    mock.set_behaviour({"lr-a-up": {"reply": "a is back"}})
    raw = ask(client, "lr-a")  # both skipped; the last resort is lr-a itself, which answers
    assert raw.parse().choices[0].message.content == "a is back"
    assert raw.headers["x-switchboard-model"] == "lr-a" and "x-switchboard-fallback" not in raw.headers
    assert metric(gw, "switchboard_fallbacks_total", from_model="lr-a", to_model="lr-b") in (None, 1.0)


def test_streams_that_break_after_their_first_chunk_open_the_breaker(stack, client):
    gw, mock = stack
    for _ in range(3):
        with pytest.raises(openai.APIError):
            for _chunk in client.chat.completions.create(model="breaks", stream=True,
                                                         messages=[{"role": "user", "content": "s"}]):
                pass
    assert metric(gw, "switchboard_breaker_state", deployment="breaks") == 2.0
    hits = mock.stats()["by_model"]["breaks-up"]
    for _ in range(4):  # one last-resort attempt in this open period, then no traffic until the cooldown ends
        with pytest.raises(openai.APIError):
            for _chunk in client.chat.completions.create(model="breaks", stream=True,
                                                         messages=[{"role": "user", "content": "s"}]):
                pass
    assert mock.stats()["by_model"]["breaks-up"] - hits == 1


def test_a_probe_stream_that_breaks_off_reopens_a_breaker_the_failure_ratio_opened(stack, client):
    gw, mock = stack
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(client, "ratio-breaks")  # 2 of 2 failed: open on the ratio rule, far from 100 in a row
    assert metric(gw, "switchboard_breaker_state", deployment="ratio-breaks") == 2.0
    mock.set_behaviour({"ratio-breaks-up": {"reply": "one two three four five",
                                            "faults": [{"kind": "cut", "after_chunks": 2}]}})
    time.sleep(1.1)
    assert metric(gw, "switchboard_breaker_state", deployment="ratio-breaks") == 1.0
    with pytest.raises(openai.APIError):
        for _chunk in client.chat.completions.create(model="ratio-breaks", stream=True,
                                                     messages=[{"role": "user", "content": "probe"}]):
            pass
    assert metric(gw, "switchboard_breaker_state", deployment="ratio-breaks") == 2.0, \
        "the probe failed: the deployment is not let back in"


def test_an_error_event_before_the_first_chunk_fails_over(stack, client):
    stream = client.chat.completions.with_raw_response.create(model="errs-first", stream=True,
                                                              messages=[{"role": "user", "content": "s"}])
    assert stream.headers["x-switchboard-deployment"] == "steady" and stream.headers["x-switchboard-attempts"] == "2"
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices) == "steady here"


@pytest.mark.parametrize("model", ["overloaded-at-start", "errs-after-role"])
def test_an_error_event_after_the_role_alone_fails_over(stack, client, model):
    """The role tells the client nothing, so a failure right after it is retried elsewhere: Claude's overloaded_error
    after message_start is the common case."""
    _, mock = stack
    before = mock.stats()["by_model"].get(model + "-up", 0)
    stream = client.chat.completions.with_raw_response.create(model=model, stream=True,
                                                              messages=[{"role": "user", "content": "s"}])
    assert stream.headers["x-switchboard-deployment"] == "steady" and stream.headers["x-switchboard-attempts"] == "2"
    chunks = [c for c in stream.parse() if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "steady here"
    assert [c.choices[0].delta.role for c in chunks].count("assistant") == 1, "one role, from the deployment served"
    assert mock.stats()["by_model"][model + "-up"] == before + 1


def test_an_upstream_out_of_credit_is_not_asked_again_but_another_deployment_is(stack, client):
    _, mock = stack
    hits = lambda: mock.stats()["by_model"].get("unpaid-up", 0)
    before = hits()
    raw = client.chat.completions.with_raw_response.create(model="unpaid-then-steady",
                                                           messages=[{"role": "user", "content": "s"}])
    assert raw.headers["x-switchboard-deployment"] == "steady"
    assert raw.parse().choices[0].message.content == "steady here"
    for model in ("unpaid", "unpaid-claude"):  # OpenAI's 402, Anthropic's billing_error
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "s"}])
        assert refused.value.status_code == 502 and refused.value.code == "upstream_payment_required"
    assert hits() == before + 3, "one call each: a deployment out of credit is not retried for the request"


def test_a_stream_of_nothing_but_done_fails_over(stack, client):
    _, mock = stack
    before = mock.stats()["by_model"].get("empty-stream-up", 0)
    raw = client.chat.completions.with_raw_response.create(model="empty-stream", stream=True,
                                                           messages=[{"role": "user", "content": "s"}])
    assert raw.headers["x-switchboard-deployment"] == "steady" and raw.headers["x-switchboard-attempts"] == "2"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) == "steady here"
    assert mock.stats()["by_model"]["empty-stream-up"] == before + 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_retry_after_of_no_finite_number_is_not_a_wait(stack, client, stream):
    """`Retry-After: 1e400` (infinity as a float) asks nothing readable: the 429 fails over like any other."""
    raw = client.chat.completions.with_raw_response.create(model="endless-wait", stream=stream,
                                                           messages=[{"role": "user", "content": "s"}])
    assert raw.headers["x-switchboard-deployment"] == "steady"
    parsed = raw.parse()
    text = parsed.choices[0].message.content if not stream else "".join(
        c.choices[0].delta.content or "" for c in parsed if c.choices)
    assert text == "steady here"


def test_a_stream_an_upstream_error_event_breaks_off_is_logged_as_a_502_not_as_the_events_status(stack, client):
    gw, _ = stack
    raw = client.chat.completions.with_raw_response.create(model="errs-later", stream=True,
                                                           messages=[{"role": "user", "content": "s"}])
    text = ""
    with pytest.raises(openai.APIError, match="broke off"):  # Claude's overloaded_error after two words
        for chunk in raw.parse():
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "one two", "no failover once words went out"
    row = row_of(gw, raw.headers["x-request-id"])
    assert (row["status"], row["error_type"]) == (502, "upstream_overloaded"), "the client had a 200, then a break"
    assert json.loads(row["extra"])["stream_interrupted"] is True


def test_an_open_breaker_sheds_load_and_its_half_open_state_lets_one_probe_through(stack, client):
    gw, mock = stack
    hits = lambda: mock.stats()["by_model"].get("down-up", 0)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(client, "down")
    assert metric(gw, "switchboard_breaker_state", deployment="down") == 2.0

    def burst() -> list[int]:
        def one(_):
            try:
                return ask(client, "down").status_code
            except openai.APIStatusError as exc:
                return exc.status_code
        with ThreadPoolExecutor(10) as pool:
            return list(pool.map(one, range(10)))

    before = hits()
    statuses = burst()  # during the cooldown: one last-resort attempt, the rest told when to come back
    assert hits() - before == 1 and sorted(statuses) == [502] + [503] * 9, statuses
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "down")
    assert info.value.status_code == 503 and 1 <= int(info.value.response.headers["retry-after"]) <= 2
    time.sleep(1.6)
    before = hits()
    statuses = burst()  # half-open: one probe (0.3 s) at a time, not the whole burst
    assert hits() - before == 1 and sorted(statuses) == [502] + [503] * 9, statuses


def test_a_503_while_the_only_breaker_waits_on_its_probe_says_when_to_come_back(stack, client):
    gw, mock = stack
    with pytest.raises(openai.InternalServerError):
        ask(client, "probed")  # opens the breaker
    mock.set_behaviour({"probed-up": {"reply": "slowly back", "latency": 1.0}})
    time.sleep(0.6)  # half-open: the next request is its one probe
    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(ask, client, "probed")
        assert wait_for(lambda: mock.stats()["by_model"].get("probed-up", 0) == 2, timeout=1)
        with pytest.raises(openai.APIStatusError) as info:
            ask(client, "probed")  # the probe is still out: nothing to try
        assert probe.result().parse().choices[0].message.content == "slowly back"
    assert info.value.status_code == 503
    assert info.value.response.headers.get("retry-after") == "1", "a shed request is told when to come back"


def test_with_default_retries_a_dead_model_falls_back_on_the_first_request(stack, client):
    gw, mock = stack
    raw = ask(client, "primary")
    assert raw.parse().choices[0].message.content == "backup here"
    assert raw.headers["x-switchboard-fallback"] == "fallback" and raw.headers["x-switchboard-attempts"] == "3"
    assert mock.stats()["by_model"]["dead-up"] == 2


def test_a_client_that_leaves_a_plain_call_is_logged_against_the_deployment_it_waited_on(stack, client):
    gw, _ = stack
    request_id = f"leaver-{uuid.uuid4().hex[:8]}"
    hasty = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        hasty.chat.completions.create(model="slowpoke", messages=[{"role": "user", "content": "hi"}],
                                      extra_headers={"x-request-id": request_id})
    row = wait_for(lambda: [r for r in gw.requests_logged() if r["model_requested"] == "slowpoke"], timeout=8)[0]
    assert row["status"] == 499
    assert (row["deployment"], row["model_used"], row["provider"]) == ("slowpoke", "slowpoke", "openai")


def test_latency_strategy_prefers_the_faster_deployment(stack, client):
    served = collections.Counter(ask(client, "lat").headers["x-switchboard-deployment"] for _ in range(40))
    print(f"\nlatency strategy: {dict(served)}")
    assert served["lat-fast"] >= 30


def test_cost_strategy_uses_the_cheapest_deployment(stack, client):
    served = collections.Counter(ask(client, "cost").headers["x-switchboard-deployment"] for _ in range(10))
    assert served == {"cheap": 10}


def test_rpm_limit_moves_traffic_to_the_deployment_with_headroom(stack, client):
    served = [ask(client, "rpm").headers["x-switchboard-deployment"] for _ in range(6)]
    print(f"\nrpm: {served}")
    assert served[:2] == ["limited", "limited"] and set(served[2:]) == {"spare"}


def test_deadline_bounds_the_whole_request(stack, client):
    t0 = time.perf_counter()
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "stuck")
    elapsed = time.perf_counter() - t0
    assert info.value.status_code == 504
    assert elapsed < 1.5, elapsed


def test_ttft_timeout_fails_a_slow_stream_over_before_any_byte(stack, client):
    t0 = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(model="ttft", stream=True,
                                                           messages=[{"role": "user", "content": "s"}])
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "quick" and time.perf_counter() - t0 < 1.5
    assert raw.headers["x-switchboard-attempts"] == "2"
    extra = json.loads(row_of(stack[0], raw.headers["x-request-id"])["extra"])
    assert extra["attempts"][0]["error"] == "timeout" and "first chunk" in extra["attempts"][0]["message"]


def test_content_policy_refusal_goes_to_the_policy_chain(stack, client):
    raw = ask(client, "refuse")
    assert raw.parse().choices[0].message.content == "lenient"
    assert raw.headers["x-switchboard-fallback"] == "content_policy"


def test_metrics_endpoint_speaks_prometheus_text(stack, client):
    gw, _ = stack
    ask(client, "cost")
    status, headers, body = http("GET", gw.url + "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    for family in ("switchboard_requests_total", "switchboard_request_duration_seconds", "switchboard_ttft_seconds",
                   "switchboard_upstream_errors_total", "switchboard_retries_total", "switchboard_fallbacks_total",
                   "switchboard_breaker_state", "switchboard_in_flight_requests", "switchboard_upstream_attempts_total"):
        assert f"# TYPE {family} " in text, family
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+Inf-]+$')
    bad = [line for line in text.splitlines() if line and not line.startswith("#") and not sample.match(line)]
    assert not bad, bad[:3]
    assert (metric(gw, "switchboard_requests_total", model="cost", status="200") or 0) >= 1
    assert metric(gw, "switchboard_request_duration_seconds_count", model="cost", stream="false") >= 1
    # a model name a client made up is no label of its own: clients cannot grow the series without bound
    with pytest.raises(openai.NotFoundError):
        ask(client, "made-up-model-31337")
    text = http("GET", gw.url + "/metrics")[2].decode()
    assert "made-up-model-31337" not in text and metric(gw, "switchboard_requests_total", model="-", status="404")


# ---------------------------------------------------------------- shared breakers (Redis)


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_breaker_state_is_shared_between_replicas_through_redis(tmp_path):
    mock = MockProc(tmp_path, {"bad-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
                               "good-up": {"reply": "good"}})
    base = mock.url + "/v1"
    config = {
        "storage": {"redis_url": "${SB_REDIS}", "log_flush_seconds": 0.05},
        "reliability": {"redis_namespace": f"sbtest-{uuid.uuid4().hex[:8]}"},
        "models": {"shared": {"strategy": "ordered", "breaker": {"failures": 2, "cooldown": 30},
                              "deployments": [{"provider": "openai", "model": m, "base_url": base, "id": m}
                                              for m in ("bad-up", "good-up")]}},
    }
    env = {"SB_REDIS": "redis://127.0.0.1:6379/0"}
    procs = [GatewayProc(tmp_path, {**config, "storage": {**config["storage"], "sqlite_path": str(tmp_path / "a.db")}},
                         env=env, name="a"),
             GatewayProc(tmp_path, {**config, "storage": {**config["storage"], "sqlite_path": str(tmp_path / "b.db")}},
                         env=env, name="b")]
    try:
        a, b = procs
        ca = openai.OpenAI(api_key="x", base_url=a.url + "/v1", max_retries=0)
        cb = openai.OpenAI(api_key="x", base_url=b.url + "/v1", max_retries=0)
        for _ in range(3):
            ca.chat.completions.create(model="shared", messages=[{"role": "user", "content": "x"}])
        bad_hits = mock.stats()["by_model"]["bad-up"]
        assert bad_hits == 2 and metric(a, "switchboard_breaker_state", deployment="bad-up") == 2.0
        # Replica b never saw a failure, yet learns the breaker is open (pub/sub) and sends nothing there.
        assert wait_for(lambda: metric(b, "switchboard_breaker_state", deployment="bad-up") == 2.0, timeout=3)
        for _ in range(5):
            raw = cb.chat.completions.with_raw_response.create(model="shared", messages=[{"role": "user", "content": "x"}])
            assert raw.headers["x-switchboard-attempts"] == "1"
        # A replica started later loads the open breaker when it starts.
        procs.append(GatewayProc(tmp_path, {**config, "storage": {**config["storage"],
                                                                  "sqlite_path": str(tmp_path / "c.db")}},
                                 env=env, name="c"))
        assert metric(procs[2], "switchboard_breaker_state", deployment="bad-up") == 2.0
        cc = openai.OpenAI(api_key="x", base_url=procs[2].url + "/v1", max_retries=0)
        cc.chat.completions.create(model="shared", messages=[{"role": "user", "content": "x"}])
        print(f"\nredis: bad deployment hits {mock.stats()['by_model']['bad-up']} (2 on replica a, 0 on b and c)")
        assert mock.stats()["by_model"]["bad-up"] == bad_hits
    finally:
        for p in procs:
            p.stop()
        mock.stop()


@pytest.mark.skipif(not redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_a_wildcard_models_breaker_opened_on_one_replica_is_taken_on_by_another_through_redis(tmp_path):
    mock = MockProc(tmp_path, {"bad-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
                               "bad-up-good": {"reply": "good"}})
    up = {"provider": "openai", "base_url": mock.url + "/v1"}
    config = {
        "reliability": {"redis_namespace": f"sbtest-{uuid.uuid4().hex[:8]}"},
        "models": {"w/*": {"strategy": "ordered", "breaker": {"failures": 2, "cooldown": 30},
                           "pricing": {"input_per_mtok": 0, "output_per_mtok": 0},
                           "deployments": [{**up, "model": "*"}, {**up, "model": "*-good"}]}},
    }
    env = {"SB_REDIS": "redis://127.0.0.1:6379/0"}
    procs = [GatewayProc(tmp_path, {**config, "storage": {"redis_url": "${SB_REDIS}",
                                                          "sqlite_path": str(tmp_path / f"{n}.db")}},
                         env=env, name=n) for n in ("a", "b")]
    try:
        a, b = procs
        hi = [{"role": "user", "content": "x"}]
        ca = openai.OpenAI(api_key="x", base_url=a.url + "/v1", max_retries=0)
        for _ in range(2):
            ca.chat.completions.create(model="w/bad-up", messages=hi)
        assert mock.stats()["by_model"]["bad-up"] == 2 and metric(a, "switchboard_breaker_state",
                                                                  deployment="w/bad-up#0") == 2.0
        # b makes the model later, on its first request for it, and loads the breaker a stored (one failure
        # of its own would not open it: `failures: 2`)
        cb = openai.OpenAI(api_key="x", base_url=b.url + "/v1", max_retries=0)
        cb.chat.completions.create(model="w/bad-up", messages=hi)
        assert wait_for(lambda: metric(b, "switchboard_breaker_state", deployment="w/bad-up#0") == 2.0, timeout=3)
        before = mock.stats()["by_model"]["bad-up"]
        assert before <= 3  # the request that made the model may have tried it once, before the load
        for _ in range(5):
            raw = cb.chat.completions.with_raw_response.create(model="w/bad-up", messages=hi)
            assert raw.headers["x-switchboard-attempts"] == "1"
        assert mock.stats()["by_model"]["bad-up"] == before
    finally:
        for p in procs:
            p.stop()
        mock.stop()


# ---------------------------------------------------------------- config and the breaker in isolation


def test_reliability_config_errors_name_the_key():
    from switchboard.config import ConfigError, config_from_dict

    dep = {"provider": "openai", "base_url": "http://127.0.0.1:1/v1"}
    with pytest.raises(ConfigError, match=r"models\.m\.breaker\.failures.*at least 1"):
        config_from_dict({"models": {"m": {"deployments": [dep], "breaker": {"failures": 0}}}})
    with pytest.raises(ConfigError, match="unknown key 'tries'"):
        config_from_dict({"models": {"m": {"deployments": [dep], "retries": {"tries": 3}}}})
    with pytest.raises(ConfigError, match="percentile"):
        config_from_dict({"models": {"m": {"deployments": [dep], "hedge": {"delay": "pxx"}}}})
    cfg = config_from_dict({"reliability": {"retries": {"max_attempts": 7}, "hedge": {"delay": "p90"}},
                            "models": {"m": {"deployments": [{**dep, "timeouts": {"ttft": 2}}],
                                             "retries": {"deadline": 5}},
                                       "n": {"deployments": [dep], "hedge": {"enabled": False}}}})
    m = cfg.models["m"].reliability
    assert (m.retries.max_attempts, m.retries.deadline, m.hedge.percentile, m.hedge.delay) == (7, 5.0, 90.0, None)
    assert cfg.models["m"].deployments[0].ttft == 2.0
    assert cfg.models["n"].reliability.hedge is None


def test_breaker_opens_on_failure_ratio_within_its_window():
    from switchboard.routing.health import CLOSED, HALF_OPEN, OPEN, Breaker
    from switchboard.routing.policy import BreakerPolicy

    b = Breaker("d", BreakerPolicy(failures=100, failure_ratio=0.5, min_requests=10, window=10, cooldown=5))
    now = 1000.0
    for i in range(9):  # alternate: never 100 in a row, ratio 4/9 < 0.5 (and under min_requests)
        (b.failure if i % 2 else b.success)(now + i * 0.01)
    assert b.state == CLOSED
    b.failure(now + 0.1)
    b.failure(now + 0.11)  # 6 of 11 failed
    assert b.state == OPEN and not b.available(now + 1)
    assert b.available(now + 5.2) and b.state == HALF_OPEN
    assert b.begin() and not b.available(now + 5.2), "one probe at a time"
    b.success(now + 5.3)
    assert b.state == CLOSED
    # Old results age out of the window.
    for i in range(6):
        b.failure(now + 10 + i * 0.01) if i < 4 else b.success(now + 10 + i * 0.01)
    assert b.state == CLOSED  # 4 failures, under min_requests
    for i in range(6):
        b.success(now + 40 + i * 0.01)
    assert b.state == CLOSED


def test_a_success_begun_before_the_breaker_opened_does_not_close_it():
    from switchboard.routing.health import CLOSED, OPEN, Breaker
    from switchboard.routing.policy import BreakerPolicy

    b = Breaker("d", BreakerPolicy(cooldown=5))
    now = 1000.0
    b.failure(now, retry_after=30)  # a 429 with Retry-After: 30
    assert b.state == OPEN
    b.success(now + 1, began_closed=True)  # a slower request sent before the 429 comes back fine...
    assert b.state == OPEN and not b.available(now + 2), "...which says nothing about the deployment now"
    assert b.available(now + 31) and b.begin()
    b.success(now + 31.5)  # the probe, begun once the wait was over, does close it
    assert b.state == CLOSED
