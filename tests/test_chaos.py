"""Chaos suite: the official SDK against a real gateway whose mock upstreams misbehave on purpose.

Each case prints its figures (run with -s to see them) and asserts them.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import time

import openai
import pytest
from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-chaos-master-0123456789"
REPLY = "one two three four five six seven eight nine ten eleven twelve"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chaos")
    mock = MockProc(tmp, {
        # the chaos model: one flaky, one hanging, one in a 429 storm, one dropping connections, one steady
        "flaky-up": {"reply": REPLY, "faults": [{"kind": "status", "status": 500, "rate": 0.5}]},
        "hang-up": {"reply": REPLY, "faults": [{"kind": "hang", "rate": 1.0}]},
        "storm-up": {"reply": REPLY, "faults": [{"kind": "status", "status": 429, "rate": 1.0, "retry_after": 1}]},
        "drop-up": {"reply": REPLY, "faults": [{"kind": "drop", "rate": 1.0}]},
        "steady-up": {"reply": REPLY},
        # a model whose every deployment is down, and its fallback
        "dead-a-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
        "dead-b-up": {"faults": [{"kind": "status", "status": 503, "rate": 1.0}]},
        "backup-up": {"reply": "backup here"},
        # context windows: the gateway knows "short"'s window; "tight" only finds out from the upstream
        "short-up": {"reply": "short here"},
        "tight-up": {"reply": "tight here", "context_window": 50},
        "long-up": {"reply": "long here"},
        # breaker: a bad deployment in front of a good one
        "flap-bad-up": {"reply": "bad here", "faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
        "flap-good-up": {"reply": "good here"},
        # a stream cut after its first chunks
        "cut-up": {"reply": REPLY, "faults": [{"kind": "cut", "rate": 1.0, "after_chunks": 2}]},
    })
    base = mock.url + "/v1"

    def dep(upstream, **extra):
        return {"provider": "openai", "model": upstream, "base_url": base, "id": upstream.removesuffix("-up"), **extra}

    fast = {"connect": 1, "read": 0.5, "ttft": 0.5, "total": 5}
    config = {
        "auth": {"master_key": "${SB_MASTER}"},
        "storage": {"log_flush_seconds": 0.05},
        "reliability": {
            "retries": {"max_attempts": 5, "backoff_base": 0.01, "backoff_max": 0.1, "deadline": 10},
            "breaker": {"failures": 3, "window": 5, "min_requests": 10, "cooldown": 1.0},
        },
        "models": {
            "chaos": {"deployments": [dep(f"{n}-up", timeouts=fast) for n in ("flaky", "hang", "storm", "drop", "steady")],
                      "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
            "primary": {"deployments": [dep("dead-a-up"), dep("dead-b-up")], "fallbacks": ["backup"]},
            "backup": {"deployments": [dep("backup-up")]},
            "short": {"deployments": [dep("short-up")], "context_window": 50, "context_window_fallbacks": ["long"]},
            "tight": {"deployments": [dep("tight-up")], "context_window_fallbacks": ["long"]},
            "long": {"deployments": [dep("long-up")], "context_window": 100000},
            "flappy": {"deployments": [dep("flap-bad-up"), dep("flap-good-up")], "strategy": "ordered",
                       "breaker": {"failures": 3, "cooldown": 0.5}},
            "cutter": {"deployments": [dep("cut-up")]},
        },
    }
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER})
    yield gw, mock
    gw.stop()
    mock.stop()


def client(gw, **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=20, **kw)


def metric(gw, name: str, **labels) -> float | None:
    """One sample from the gateway's /metrics."""
    _, _, body = http("GET", gw.url + "/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.decode().splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


async def parsed(raw):
    """The SDK's parsed body from a raw response (`parse` is sync for streams in some SDK versions)."""
    result = raw.parse()
    return await result if inspect.isawaitable(result) else result


def logged(gw, predicate, count: int, timeout: float = 10.0) -> list[dict]:
    def enough() -> list[dict] | None:
        rows = [r for r in gw.requests_logged() if predicate(r)]
        return rows if len(rows) >= count else None

    rows = wait_for(enough, timeout=timeout)
    assert rows, f"expected {count} logged rows"
    return rows


def test_chaos_2000_requests_succeed_and_nothing_is_billed_twice(stack):
    gw, mock = stack
    before = mock.stats()
    total, concurrency, streamed_every = 2000, 64, 4
    results: list[tuple[bool, str | None, str | None, int]] = []

    async def drive() -> None:
        aclient = openai.AsyncOpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=20)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                messages = [{"role": "user", "content": f"chaos request {i}"}]
                try:
                    if i % streamed_every == 0:
                        raw = await aclient.chat.completions.with_raw_response.create(
                            model="chaos", messages=messages, stream=True)
                        text = "".join([c.choices[0].delta.content or "" async for c in await parsed(raw) if c.choices])
                    else:
                        raw = await aclient.chat.completions.with_raw_response.create(model="chaos", messages=messages)
                        text = (await parsed(raw)).choices[0].message.content
                    ok = text == REPLY
                    results.append((ok, raw.headers.get("x-request-id"), raw.headers.get("x-switchboard-deployment"),
                                    int(raw.headers.get("x-switchboard-attempts", "0"))))
                except openai.APIError as exc:
                    results.append((False, None, f"error: {exc}", 0))

        await asyncio.gather(*(one(i) for i in range(total)))
        await aclient.close()

    t0 = time.perf_counter()
    asyncio.run(drive())
    elapsed = time.perf_counter() - t0

    ok = [r for r in results if r[0]]
    served_by = collections.Counter(r[2] for r in ok)
    attempts = collections.Counter(r[3] for r in ok)
    failures = [r[2] for r in results if not r[0]]
    after = mock.stats()
    upstream_hits = {m: after["by_model"].get(m, 0) - before["by_model"].get(m, 0)
                     for m in ("flaky-up", "hang-up", "storm-up", "drop-up", "steady-up")}
    rate = len(ok) / total
    print(f"\nchaos: {len(ok)}/{total} succeeded ({rate:.4%}) in {elapsed:.1f}s; "
          f"served by {dict(served_by)}; attempts per request {dict(sorted(attempts.items()))}; "
          f"retries {sum((a - 1) * n for a, n in attempts.items())}")
    print(f"chaos: upstream hits per deployment {upstream_hits}; failures {failures[:3]}")
    for d in ("flaky", "hang", "storm", "drop", "steady"):
        print(f"chaos: breaker {d}: opened {metric(gw, 'switchboard_breaker_transitions_total', deployment=d, state='open') or 0:.0f} times")
    assert rate >= 0.999, failures[:5]

    # Exactly one log row per client request, with the deployment and cost of the one attempt that answered.
    rows = logged(gw, lambda r: r["model_requested"] == "chaos", total)
    assert len(rows) == total
    assert len({r["request_id"] for r in rows}) == total, "a request was logged twice"
    good_rows = [r for r in rows if r["status"] == 200]
    assert {r["request_id"] for r in good_rows} == {r[1] for r in ok}
    assert all(r["deployment"] == served for r, served in
               zip(sorted(good_rows, key=lambda r: r["request_id"]), [x[2] for x in sorted(ok, key=lambda x: x[1])]))

    # The mock "bills" every request it completes: exactly one per successful client request, same tokens.
    billed = after["completed"] - before["completed"]
    billed_tokens = (after["prompt_tokens"] + after["completion_tokens"]
                     - before["prompt_tokens"] - before["completion_tokens"])
    logged_tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in good_rows)
    logged_cost = sum(r["cost"] for r in good_rows)
    print(f"chaos: upstream billed {billed} requests / {billed_tokens} tokens; "
          f"log holds {len(good_rows)} successes / {logged_tokens} tokens / ${logged_cost:.6f}")
    assert billed == len(good_rows) == len(ok)
    assert billed_tokens == logged_tokens
    expected_cost = sum((r["prompt_tokens"] * 1.0 + r["completion_tokens"] * 2.0) / 1e6 for r in good_rows)
    assert logged_cost == pytest.approx(expected_cost)

    # Breakers kept traffic away from the broken deployments: after the first burst (at most one
    # concurrency's worth), about one probe per cooldown (1 s), not an even share of 400.
    for bad in ("hang-up", "storm-up", "drop-up"):
        assert upstream_hits[bad] < min(total / 5, concurrency + 3 * elapsed / 1.0), (upstream_hits, elapsed)
    assert served_by["steady"] > total / 2
    # Nothing is left in flight: every attempt, hedge and stream gave its slot back.
    assert wait_for(lambda: metric(gw, "switchboard_in_flight_requests") == 0, timeout=5)
    for d in ("flaky", "hang", "storm", "drop", "steady"):
        assert metric(gw, "switchboard_deployment_in_flight", deployment=d) == 0, d


def test_model_with_every_deployment_down_falls_back(stack):
    gw, mock = stack
    c = client(gw)
    firsts = []
    for _ in range(8):
        raw = c.chat.completions.with_raw_response.create(model="primary", messages=[{"role": "user", "content": "hi"}])
        assert raw.parse().choices[0].message.content == "backup here"
        assert raw.headers["x-switchboard-model"] == "backup"
        assert raw.headers["x-switchboard-fallback"] == "fallback"
        firsts.append(int(raw.headers["x-switchboard-attempts"]))
    hits = mock.stats()["by_model"]
    print(f"\nfallback: attempts per request {firsts}; dead-a hits {hits.get('dead-a-up', 0)}, "
          f"dead-b hits {hits.get('dead-b-up', 0)}")
    assert firsts[0] >= 3, "the first request tried the primary's deployments first"
    assert firsts[-1] == 1, "once both breakers are open the fallback answers at once"
    rows = logged(gw, lambda r: r["model_requested"] == "primary", 8)
    first = min(rows, key=lambda r: r["ts"])
    extra = json.loads(first["extra"])
    assert extra["fallbacks"] == [{"from": "primary", "to": "backup", "reason": "fallback"}]
    assert [a["error"] for a in extra["attempts"]][-1] is None
    assert {a["deployment"] for a in extra["attempts"][:-1]} == {"dead-a", "dead-b"}
    assert (metric(gw, "switchboard_fallbacks_total", from_model="primary", to_model="backup", reason="fallback") or 0) >= 8


def test_prompt_over_the_context_window_goes_to_the_long_context_model(stack):
    gw, mock = stack
    c = client(gw)
    before = mock.stats()["by_model"]
    long_prompt = "word " * 200  # ~250 tokens: over short's window of 50
    raw = c.chat.completions.with_raw_response.create(model="short", messages=[{"role": "user", "content": long_prompt}])
    assert raw.parse().choices[0].message.content == "long here"
    assert raw.headers["x-switchboard-model"] == "long"
    assert raw.headers["x-switchboard-attempts"] == "1", "no doomed attempt on the short model"
    assert mock.stats()["by_model"].get("short-up", 0) == before.get("short-up", 0)
    # A short prompt stays on the short model.
    assert c.chat.completions.create(model="short", messages=[{"role": "user", "content": "hi"}]
                                     ).choices[0].message.content == "short here"
    # The gateway does not know tight's window: the upstream's context_length_exceeded switches chains.
    raw = c.chat.completions.with_raw_response.create(model="tight", messages=[{"role": "user", "content": long_prompt}])
    assert raw.parse().choices[0].message.content == "long here"
    assert raw.headers["x-switchboard-attempts"] == "2"
    assert raw.headers["x-switchboard-fallback"] == "context_window"
    # Streams take the same path.
    stream = c.chat.completions.create(model="short", stream=True, messages=[{"role": "user", "content": long_prompt}])
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == "long here"
    rows = logged(gw, lambda r: r["model_requested"] == "tight", 1)
    extra = json.loads(rows[0]["extra"])
    print(f"\ncontext: tight -> {rows[0]['model_used']} after attempts {[a['error'] for a in extra['attempts']]}")
    assert [a["error"] for a in extra["attempts"]] == ["context_length", None]
    assert rows[0]["model_used"] == "long"


def test_breaker_opens_stops_traffic_and_closes_after_recovery(stack):
    gw, mock = stack
    c = client(gw)
    hits = lambda: mock.stats()["by_model"].get("flap-bad-up", 0)
    start = hits()
    for _ in range(20):
        assert c.chat.completions.create(model="flappy", messages=[{"role": "user", "content": "x"}]
                                         ).choices[0].message.content == "good here"
    while_open = hits() - start
    state = metric(gw, "switchboard_breaker_state", deployment="flap-bad")
    print(f"\nbreaker: bad deployment got {while_open} of 20 requests; state {state}")
    assert while_open == 3, "three failures open the breaker, then no more traffic"
    assert state == 2.0
    # Still failing after the cooldown: one half-open probe, then open again.
    time.sleep(0.6)
    c.chat.completions.create(model="flappy", messages=[{"role": "user", "content": "x"}])
    assert hits() - start == 4
    assert metric(gw, "switchboard_breaker_state", deployment="flap-bad") == 2.0
    # Recovery: after the cooldown the probe succeeds and the breaker closes.
    mock.set_behaviour({"flap-bad-up": {"reply": "bad here"}})
    time.sleep(0.6)
    answers = [c.chat.completions.create(model="flappy", messages=[{"role": "user", "content": "x"}]
                                         ).choices[0].message.content for _ in range(5)]
    print(f"breaker: after recovery answers {answers}; state {metric(gw, 'switchboard_breaker_state', deployment='flap-bad')}")
    assert answers == ["bad here"] * 5, "ordered strategy: traffic is back on the recovered deployment"
    assert metric(gw, "switchboard_breaker_state", deployment="flap-bad") == 0.0
    assert (metric(gw, "switchboard_breaker_transitions_total", deployment="flap-bad", state="closed") or 0) >= 1


def test_stream_cut_after_first_chunk_ends_with_an_error_event(stack):
    gw, _ = stack
    c = client(gw)
    received: list[str] = []
    t0 = time.perf_counter()
    with pytest.raises(openai.APIError) as info:
        for chunk in c.chat.completions.create(model="cutter", stream=True,
                                               messages=[{"role": "user", "content": "stream"}]):
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    elapsed = time.perf_counter() - t0
    print(f"\ncut: got {len(received)} chunks then {type(info.value).__name__}: {info.value} after {elapsed:.2f}s")
    assert elapsed < 5, "no hang"
    assert len(received) >= 1
    assert "broke off" in str(info.value)
    # The raw stream: data events, the last an OpenAI-shaped error, no [DONE].
    status, _, body = http("POST", gw.url + "/v1/chat/completions", {
        "model": "cutter", "stream": True, "messages": [{"role": "user", "content": "stream"}]},
        headers={"authorization": f"Bearer {MASTER}"})
    events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    assert status == 200 and events[-1] != "[DONE]"
    assert json.loads(events[-1])["error"]["code"] == "stream_interrupted"
    rows = logged(gw, lambda r: r["model_requested"] == "cutter", 2)
    for row in rows:
        extra = json.loads(row["extra"])
        assert row["status"] == 502 and extra["stream_interrupted"] is True
        assert extra["attempts"][-1]["after_first_chunk"] is True
    assert (metric(gw, "switchboard_stream_interruptions_total", deployment="cut") or 0) >= 2
