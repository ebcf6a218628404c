"""Serving smart routers: `model="auto"` through a running gateway, with the openai SDK as client."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys

import openai
import pytest

from support import DATA, GatewayProc, MockProc, http, wait_for

from switchboard.routing.intents import IntentRoute, lexical, match
from switchboard.testing.pdf import build_pdf

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/routellm")


def _gsm8k_questions() -> list[str]:
    with open(DATA / "gsm8k" / "test.jsonl", encoding="utf-8") as fh:
        return [json.loads(line)["question"] for line in fh if line.strip()]


@pytest.fixture(scope="module")
def questions():
    qs = _gsm8k_questions()
    random.Random(11).shuffle(qs)
    return qs


@pytest.fixture(scope="module")
def gsm8k_halves():
    """Recorded GSM8K results, split in two: one half trains a router, the other tests it."""
    from switchboard.routing.smart.dataset import load_gsm8k

    examples = load_gsm8k(DATA)
    random.Random(3).shuffle(examples)
    return examples[: len(examples) // 2], examples[len(examples) // 2:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, questions, gsm8k_halves):
    tmp = tmp_path_factory.mktemp("auto")
    mock = MockProc(tmp, {"weak-up": {"reply": "weak answer"}, "strong-up": {"reply": "strong answer"},
                          "coder-up": {"reply": "code answer"}, "judge-up": {"reply": "NO"},
                          "sure-up": {"reply": "a confident weak answer", "logprob": -0.1},
                          "unsure-up": {"reply": "a doubtful weak answer", "logprob": -1.5}})
    verifier = tmp / "verifier.npz"
    trained = subprocess.run([sys.executable, "-m", "switchboard", "router", "train", "--kind", "verifier", "--data",
                              str(DATA), "--benchmark", "gsm8k", "--out", str(verifier)],
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    half_router = tmp / "gsm8k-half.npz"
    train_half = tmp / "gsm8k-half.jsonl"
    train_half.write_text("\n".join(json.dumps({"prompt": e.prompt, "scores": {"strong": e.strong, "weak": e.weak}})
                                     for e in gsm8k_halves[0]))
    trained = subprocess.run([sys.executable, "-m", "switchboard", "router", "train", "--data", str(train_half),
                              "--out", str(half_router)], capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "quality targets" in trained.stdout
    calibration = tmp / "calibration.jsonl"
    # Both shapes a calibration file may have: {"prompt"}, and record mode's {"messages"} (text parts here).
    calibration.write_text("\n".join(
        json.dumps({"prompt": q} if i % 2 else {"messages": [{"role": "user", "content": [{"type": "text", "text": q}]}],
                                                 "model": "weak", "response": "..."})
        for i, q in enumerate(questions[:600])))

    def model(upstream, price_in, price_out, **extra):
        return {"deployments": [{"provider": "openai", "model": upstream, "base_url": mock.url + "/v1"}],
                "pricing": {"input_per_mtok": price_in, "output_per_mtok": price_out}, **extra}

    config = {"models": {
        "weak": model("weak-up", 0.5, 1.0, context_window=300, capabilities=["json"]),
        "strong": model("strong-up", 10.0, 30.0, context_window=100000, capabilities=["vision", "tools", "json"]),
        "coder": model("coder-up", 1.0, 2.0),
        "judge": model("judge-up", 0.1, 0.1),
        "math-weak": model("math-weak-up", 0.5, 1.0),
        "sure-weak": model("sure-up", 0.5, 1.0),
        "unsure-weak": model("unsure-up", 0.5, 1.0),
        "vision-small": model("vision-small-up", 1.0, 2.0, context_window=8000, capabilities=["vision"]),
        "big-weak": model("weak-up", 0.5, 1.0, context_window=1000000, capabilities=["vision", "tools", "json"]),
        "coder-small": model("coder-up", 1.0, 2.0, context_window=500),
    }, "routers": {
        "auto": {"strong": "strong", "weak": "weak", "routes": [
            {"name": "code", "model": "coder",
             "examples": ["write a python function that", "fix this bug in my javascript code", "refactor this class"]}]},
        "auto-picky": {"strong": "strong", "weak": "weak", "vision_model": "vision-small"},
        "auto-big-weak": {"strong": "strong", "weak": "big-weak", "threshold": 1.0, "routes": [
            {"name": "code", "model": "coder-small", "examples": ["write a python function that"]}]},
        "auto-json-tools": {"strong": "strong", "weak": "big-weak", "threshold": 1.0, "cascade": {"check": "json"}},
        "auto-regex-tools": {"strong": "strong", "weak": "big-weak", "threshold": 1.0,
                             "cascade": {"check": "regex", "pattern": "^lookup\\("}},
        "auto-30": {"strong": "strong", "weak": "weak", "strong_share": 0.3, "calibration_prompts": str(calibration)},
        "auto-q80": {"strong": "strong", "weak": "weak", "router": str(half_router), "quality_target": 0.8},
        "auto-json": {"strong": "strong", "weak": "weak", "threshold": 1.0, "cascade": {"check": "json"}},
        "auto-judge": {"strong": "strong", "weak": "weak", "threshold": 1.0,
                       "cascade": {"check": "judge", "judge_model": "judge"}},
        "auto-sure": {"strong": "strong", "weak": "sure-weak", "threshold": 1.0,
                      "cascade": {"check": "logprob", "min_logprob": -0.5}},
        "auto-unsure": {"strong": "strong", "weak": "unsure-weak", "threshold": 1.0,
                        "cascade": {"check": "logprob", "min_logprob": -0.5}},
        "auto-verify": {"strong": "strong", "weak": "math-weak",
                        "cascade": {"check": "verifier", "verifier": str(verifier), "escalate_share": 0.3}},
    }}
    gw = GatewayProc(tmp, config)
    yield gw, mock, verifier, half_router
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    return openai.OpenAI(api_key="unused", base_url=stack[0].url + "/v1", max_retries=0)


def routed(client, model, content, **kw):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": content}], **kw)
    return raw.headers["x-switchboard-routed-to"], raw


def test_auto_is_listed_as_a_model(client):
    assert {"auto", "auto-30"} <= {m.id for m in client.models.list()}


def test_easy_and_hard_prompts_go_to_different_models(client, questions):
    from switchboard.routing.smart import load_router

    router = load_router()
    sample = questions[600:800]
    scored = sorted(sample, key=router.score)
    easy, hard = scored[0], scored[-1]
    assert router.score(easy) < router.default_threshold <= router.score(hard)
    assert routed(client, "auto", easy)[0] == "weak"
    to, raw = routed(client, "auto", hard)
    assert to == "strong"
    assert raw.headers["x-switchboard-model"] == "strong"
    assert json.loads(raw.content)["choices"][0]["message"]["content"] == "strong answer"


def test_per_request_threshold_override(client, questions):
    q = questions[700]
    assert routed(client, "auto", q, extra_headers={"x-switchboard-threshold": "0"})[0] == "strong"
    assert routed(client, "auto", q, extra_headers={"x-switchboard-threshold": "1"})[0] == "weak"
    with pytest.raises(openai.BadRequestError) as info:
        routed(client, "auto", q, extra_headers={"x-switchboard-threshold": "high"})
    assert "x-switchboard-threshold" in info.value.body["message"]


def test_capability_rules_come_first(client, stack):
    gw = stack[0]
    image = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": image}])
    assert raw.headers["x-switchboard-routed-to"] == "strong"
    pdf = [{"type": "text", "text": "hi"}, {"type": "file", "file": {"filename": "a.pdf", "file_data": (
        "data:application/pdf;base64," + base64.b64encode(build_pdf(["page"])).decode())}}]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": pdf}])
    assert raw.headers["x-switchboard-routed-to"] == "strong", "a PDF's pages are read as images"
    with pytest.raises(openai.BadRequestError):  # a bad trade-off header is a 400 whichever rule decides
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": image}],
                                       extra_headers={"x-switchboard-strong-share": "most"})
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert routed(client, "auto", "hi", tools=tools)[0] == "strong"
    assert routed(client, "auto", "word " * 2000)[0] == "strong", "longer than the weak model's context"
    # the answer needs room too: 50 prompt tokens and 280 to write do not fit the weak model's 300
    to, raw = routed(client, "auto", "word " * 40, max_tokens=280)
    rid = raw.headers["x-request-id"]
    row = wait_for(lambda: next((r for r in gw.requests_logged() if r["request_id"] == rid), None))
    assert to == "strong" and json.loads(row["extra"])["route"] == "long_context"


def test_capability_rules_choose_a_model_that_meets_every_need(client):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert routed(client, "auto-picky", [{"type": "text", "text": "hi"}, image])[0] == "vision-small"
    # the vision model has no tools and too short a window for these: the strong model has both
    assert routed(client, "auto-picky", [{"type": "text", "text": "hi"}, image], tools=tools)[0] == "strong"
    assert routed(client, "auto-picky", [{"type": "text", "text": "word " * 9000}, image])[0] == "strong"
    # a conversation that already holds tool calls needs a model that takes them, tools offered or not
    history = [{"role": "user", "content": "weather?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "sunny"}, {"role": "user", "content": "so?"}]
    raw = client.chat.completions.with_raw_response.create(model="auto-picky", messages=history)
    assert raw.headers["x-switchboard-routed-to"] == "strong"


def test_an_intent_route_serves_only_what_its_model_can_take(client):
    ask = "Please write a Python function that sums a list"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    tools = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object"}}}]
    assert routed(client, "auto-big-weak", ask)[0] == "coder-small"
    assert routed(client, "auto-big-weak", [{"type": "text", "text": ask}, image])[0] == "big-weak"
    assert routed(client, "auto-big-weak", ask, tools=tools)[0] == "big-weak"
    assert routed(client, "auto-big-weak", "data: " + "1 " * 1000 + ask)[0] == "big-weak", "too long for coder-small"


def test_semantic_intent_route(client):
    assert routed(client, "auto", "Please write a Python function that reverses a list")[0] == "coder"
    # a paraphrase sharing no word with the examples reaches the route through the semantic half
    paraphrase = "implement a binary search tree in golang"
    assert routed(client, "auto", paraphrase)[0] == "coder"
    route = IntentRoute("code", "coder", ["write a python function that", "fix this bug in my javascript code",
                                          "refactor this class"])
    route.prepare()
    lexical_only = max(float(lexical(e) @ lexical(paraphrase)) for e in route.examples)
    assert lexical_only < route.threshold <= match([route], paraphrase)[1]
    assert routed(client, "auto", "What is the capital of Peru?")[0] != "coder"


def test_calibrated_share_holds_on_held_out_prompts(client, questions):
    held_out = questions[600:1300]
    strong = sum(routed(client, "auto-30", q)[0] == "strong" for q in held_out)
    share = strong / len(held_out)
    print(f"calibrated to 30% strong: {share:.1%} of {len(held_out)} held-out prompts went strong")
    assert abs(share - 0.30) <= 0.05
    # a per-request share is calibrated on the same prompts
    header = {"x-switchboard-strong-share": "0.5"}
    share = sum(routed(client, "auto-30", q, extra_headers=header)[0] == "strong" for q in held_out) / len(held_out)
    print(f"asked for 50% strong by header: {share:.1%} went strong")
    assert abs(share - 0.50) <= 0.05


def test_quality_target_recovers_that_share_of_the_gap_on_held_out_prompts(client, stack, gsm8k_halves):
    from switchboard.routing.smart import load_router

    router = load_router(stack[3])
    held_out = gsm8k_halves[1]
    share = router.share_for_quality(0.8)
    threshold = router.threshold_for_share(share)
    went = [routed(client, "auto-q80", e.prompt)[0] for e in held_out]
    assert set(went) == {"strong", "weak"}
    assert went == ["strong" if router.score(e.prompt) >= threshold else "weak" for e in held_out]
    strong = [to == "strong" for to in went]
    realised = sum(e.strong if s else e.weak for e, s in zip(held_out, strong))
    weak_only, strong_only = sum(e.weak for e in held_out), sum(e.strong for e in held_out)
    pgr = (realised - weak_only) / (strong_only - weak_only)
    print(f"quality target 0.8: {sum(strong) / len(held_out):.1%} strong (curve said {share:.1%}), "
          f"held-out PGR {pgr:.3f} on {len(held_out)} prompts")
    assert abs(sum(strong) / len(held_out) - share) <= 0.05
    # GSM8K's half is small: the realised PGR has a standard error of ~0.06 around the target.
    assert abs(pgr - 0.8) <= 0.12
    # Per request: no gap to recover means the weak model; a bad value is a 400 naming the header.
    hardest = max(held_out, key=lambda e: router.score(e.prompt)).prompt
    assert routed(client, "auto-q80", hardest)[0] == "strong"
    assert routed(client, "auto-q80", hardest, extra_headers={"x-switchboard-quality-target": "0"})[0] == "weak"
    with pytest.raises(openai.BadRequestError) as info:
        routed(client, "auto-q80", hardest, extra_headers={"x-switchboard-quality-target": "1.5"})
    assert "x-switchboard-quality-target" in info.value.body["message"]


def test_cascade_escalates_on_failed_json_check_and_accounts_both(client, stack):
    gw, mock, _, _ = stack
    to, raw = routed(client, "auto-json", "give me json", response_format={"type": "json_object"})
    # The mock answers JSON mode with valid JSON: the weak answer passes the check.
    assert to == "weak" and raw.headers["x-switchboard-cascade"] == "accepted"
    to, raw = routed(client, "auto-json", "give me json")
    assert to == "strong" and raw.headers["x-switchboard-cascade"] == "escalated"
    rid = raw.headers["x-request-id"]
    row = wait_for(lambda: next((r for r in gw.requests_logged() if r["request_id"] == rid), None))
    calls = json.loads(row["extra"])["cascade"]["calls"]
    assert [c["role"] for c in calls] == ["weak", "strong"]
    weak_cost = calls[0]["cost"]
    assert weak_cost > 0 and row["cost"] > weak_cost
    assert calls[1]["cost"] > 0 and weak_cost + calls[1]["cost"] == pytest.approx(row["cost"], rel=1e-9)
    assert float(raw.headers["x-switchboard-cost"]) == pytest.approx(row["cost"], rel=1e-6)


def test_cascade_checks_an_answer_that_calls_a_tool(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    for router in ("auto-json-tools", "auto-regex-tools"):
        to, raw = routed(client, router, "weather in Paris?", tools=tools, tool_choice="required")
        assert to == "big-weak" and raw.headers["x-switchboard-cascade"] == "accepted", router
        assert raw.parse().choices[0].message.tool_calls[0].function.name == "lookup"
    to, raw = routed(client, "auto-regex-tools", "weather in Paris?")  # a text answer: no call to match
    assert to == "strong" and raw.headers["x-switchboard-cascade"] == "escalated"


def test_cascade_logprob_check_accepts_a_confident_answer_and_escalates_a_doubtful_one(client, stack):
    gw, mock, _, _ = stack
    to, raw = routed(client, "auto-sure", "name a prime number")
    assert to == "sure-weak" and raw.headers["x-switchboard-cascade"] == "accepted"
    answer = raw.parse()
    assert answer.choices[0].message.content == "a confident weak answer"
    assert answer.choices[0].logprobs is None, "the client did not ask for logprobs; the check did"
    # a client that asks for them gets them, streamed too (the cascade replays the accepted answer)
    chunks = list(client.chat.completions.create(model="auto-sure", logprobs=True, stream=True,
                                                 messages=[{"role": "user", "content": "name a prime number"}]))
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert tokens and all(t.logprob == pytest.approx(-0.1) for t in tokens)
    to, raw = routed(client, "auto-unsure", "name a prime number")
    assert to == "strong" and raw.headers["x-switchboard-cascade"] == "escalated"
    assert raw.parse().choices[0].message.content == "strong answer"
    rid = raw.headers["x-request-id"]
    row = wait_for(lambda: next((r for r in gw.requests_logged() if r["request_id"] == rid), None))
    cascade = json.loads(row["extra"])["cascade"]
    assert [c["role"] for c in cascade["calls"]] == ["weak", "strong"]
    assert cascade["escalated"] and cascade["check"] == "mean logprob -1.500 vs -0.5", cascade


def test_cascade_with_judge_and_streaming(client, stack):
    raw = client.chat.completions.with_raw_response.create(model="auto-judge", stream=True,
                                                           messages=[{"role": "user", "content": "explain"}])
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "strong answer", "the judge said NO, so the strong model answered"
    row = wait_for(lambda: next((r for r in stack[0].requests_logged()
                                 if r["request_id"] == raw.headers["x-request-id"]), None))
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]


def test_request_log_keeps_score_decision_and_saving(stack, client, questions):
    gw, _, _, _ = stack
    to, raw = routed(client, "auto", questions[900])
    rid = raw.headers["x-request-id"]
    row = wait_for(lambda: next((r for r in gw.requests_logged() if r["request_id"] == rid), None))
    assert row["router"] == "auto" and row["model_used"] == to
    assert 0.0 <= row["router_score"] <= 1.0
    extra = json.loads(row["extra"])
    assert extra["route"] == "score" and extra["cost_if_strong"] >= row["cost"]


def test_cascade_verifier_escalates_a_doubtful_weak_answer(client, stack):
    from switchboard.routing.smart import load_router
    from switchboard.routing.smart.dataset import load_gsm8k

    gw, mock, verifier_file, _ = stack
    verifier = load_router(verifier_file)
    examples = load_gsm8k(DATA)
    ranked = sorted(examples, key=verifier.score_example)
    sure, doubtful = ranked[0], ranked[-1]  # lowest and highest escalation score
    outcomes = {}
    for name, example in (("sure", sure), ("doubtful", doubtful)):
        status, _, _ = http("POST", mock.url + "/_mock/behaviour", {"math-weak-up": {"reply": example.weak_answer}})
        assert status == 200
        to, raw = routed(client, "auto-verify", example.prompt)
        outcomes[name] = (to, raw.headers["x-switchboard-cascade"], raw.headers["x-request-id"])
        if name == "doubtful":
            # The trade-off can be moved per request: escalate nothing.
            to_kept, raw_kept = routed(client, "auto-verify", example.prompt, extra_headers={"x-switchboard-threshold": "1"})
            assert to_kept == "math-weak" and raw_kept.headers["x-switchboard-cascade"] == "accepted"
    assert outcomes["sure"][:2] == ("math-weak", "accepted")
    assert outcomes["doubtful"][:2] == ("strong", "escalated")
    rid = outcomes["doubtful"][2]
    row = wait_for(lambda: next((r for r in gw.requests_logged() if r["request_id"] == rid), None))
    cascade = json.loads(row["extra"])["cascade"]
    assert [c["role"] for c in cascade["calls"]] == ["weak", "strong"]
    assert cascade["verifier_score"] == pytest.approx(verifier.score_answer(doubtful.prompt, doubtful.weak_answer), abs=1e-9)


def test_a_router_name_works_wherever_a_model_name_is_looked_up(client, stack):
    import anthropic

    gw = stack[0]
    count = anthropic.Anthropic(api_key="unused", base_url=gw.url, max_retries=0).messages.count_tokens(
        model="auto", messages=[{"role": "user", "content": "How many tokens is this?"}])
    assert count.input_tokens > 0
    status, _, raw = http("GET", gw.url + "/v1/models/auto/")
    assert status == 200 and json.loads(raw)["owned_by"] == "switchboard-router"
    with pytest.raises(openai.BadRequestError) as info:  # a router picks chat models: no embeddings
        client.embeddings.create(model="auto", input="hello")
    assert "router" in info.value.body["message"] and info.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as info:  # the models a client may name include the routers
        client.chat.completions.create(model="autp", messages=[{"role": "user", "content": "hi"}])
    assert "auto-30, " in info.value.body["message"] and "strong, " in info.value.body["message"]
