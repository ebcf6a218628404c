"""The gateway core end to end: real gateway and mock upstream processes, the official openai SDK as client."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-test-master-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("core")
    mock = MockProc(tmp, {
        "small-up": {"reply": "Hello from the small model, nice to meet you."},
        "big-up": {"reply": "A considered answer from the big model."},
        "err500-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
        "err503-up": {"faults": [{"kind": "status", "status": 503, "rate": 1.0, "message": "overloaded"}]},
        "err429-up": {"faults": [{"kind": "status", "status": 429, "rate": 1.0, "retry_after": 7}]},
        "slow-up": {"latency": 5.0},
    })
    base = mock.url + "/v1"

    def model(upstream, **extra):
        return {"deployments": [{"provider": "openai", "model": upstream, "base_url": base, "api_key": "${MOCK_KEY}",
                                 **extra}], "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}

    config = {
        "auth": {"master_key": "${SB_MASTER}"},
        "server": {"max_body_bytes": 64 * 1024},
        "models": {
            "small": model("small-up"),
            "big": model("big-up"),
            "embedder": model("embed-up"),
            "broken": model("err500-up"),
            "overloaded": model("err503-up"),
            "limited": model("err429-up"),
            "slow": model("slow-up", timeouts={"read": 0.3}),
        },
    }
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "MOCK_KEY": "upstream-secret-key"})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    gw, _ = stack
    return openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=10)


def test_plain_chat_validates_against_sdk_types(client, stack):
    _, mock = stack
    raw = client.chat.completions.with_raw_response.create(
        model="small", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        temperature=0.2, max_tokens=50, extra_body={"some_unknown_field": {"kept": True}})
    request_id = raw.headers["x-request-id"]
    assert request_id.startswith("req_") and len(request_id) == 28
    assert abs(int(request_id[4:16], 16) / 1000 - time.time()) < 60, "ids start with the time in milliseconds"
    assert raw.headers["x-switchboard-model"] == "small"
    completion = ChatCompletion.model_validate(json.loads(raw.content))
    assert completion.choices[0].message.content == "Hello from the small model, nice to meet you."
    assert completion.usage.completion_tokens > 0
    sent = mock.stats()["last_request"]
    assert sent["model"] == "small-up"
    assert sent["some_unknown_field"] == {"kept": True}, "unknown request fields pass through"
    assert mock.stats()["last_headers"]["authorization"] == "Bearer upstream-secret-key"
    assert mock.stats()["last_headers"]["host"] == mock.url.split("//")[1], "Host carries a non-default port"
    time.sleep(0.002)
    later = client.chat.completions.with_raw_response.create(model="small", messages=[{"role": "user", "content": "Hi"}])
    assert later.headers["x-request-id"] > request_id, "a later request's id sorts after"


def test_streamed_chat_chunks_validate_and_end_with_done(stack):
    gw, _ = stack
    status, headers, body = http("POST", gw.url + "/v1/chat/completions", {
        "model": "big", "stream": True, "messages": [{"role": "user", "content": "stream please"}]},
        headers={"authorization": f"Bearer {MASTER}"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(e)) for e in events[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "A considered answer from the big model."
    assert all(c.usage is None for c in chunks), "no usage chunk unless the client asked for one"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_with_include_usage_via_sdk(client):
    stream = client.chat.completions.create(model="big", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "count"}])
    chunks = [ChatCompletionChunk.model_validate(c.model_dump()) for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].choices == []
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("A considered")


def test_n_choices_come_back_each_with_its_index_and_are_billed_together(client):
    one = client.chat.completions.create(model="big", messages=[{"role": "user", "content": "again"}])
    two = client.chat.completions.create(model="big", n=2, messages=[{"role": "user", "content": "again"}])
    assert [c.index for c in two.choices] == [0, 1]
    assert all(c.message.content == one.choices[0].message.content for c in two.choices)
    assert two.usage.completion_tokens == 2 * one.usage.completion_tokens
    stream = client.chat.completions.create(model="big", n=2, stream=True, messages=[{"role": "user", "content": "x"}])
    texts = {0: "", 1: ""}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: one.choices[0].message.content, 1: one.choices[0].message.content}


def test_embeddings(client, stack):
    gw, _ = stack
    floats = client.embeddings.create(model="embedder", input=["one", "two"], dimensions=8, encoding_format="float")
    result = CreateEmbeddingResponse.model_validate(floats.model_dump())
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens > 0
    # By default the SDK asks for base64 (little-endian float32) and decodes it: the same vectors
    packed = client.embeddings.create(model="embedder", input=["one", "two"], dimensions=8)
    assert [d.embedding for d in packed.data] == [pytest.approx(d.embedding, abs=1e-6) for d in floats.data]
    status, _, body = http("POST", gw.url + "/v1/embeddings", {"model": "embedder", "input": ["one", ""]},
                           headers={"authorization": f"Bearer {MASTER}"})
    assert status == 400 and json.loads(body)["error"]["param"] == "input"


def test_the_openapi_embeddings_input_is_what_the_endpoint_takes(client, stack):
    import jsonschema

    gw, _ = stack
    schema = json.loads(http("GET", gw.url + "/openapi.json")[2])["components"]["schemas"]["EmbeddingsRequest"]
    for given in ("one", ["one", "two"], [1, 2, 3], [[1, 2], [3]]):  # text, texts, tokens, token arrays
        jsonschema.validate({"model": "embedder", "input": given}, schema)
        assert len(client.embeddings.create(model="embedder", input=given).data) == (1 if given == "one" else 2
                                                                                      if len(given) == 2 else 3)
    for refused in ("", [], [""], [[]], [1, "two"]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"model": "embedder", "input": refused}, schema)
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="embedder", input=refused)


def test_model_list(client):
    ids = {m.id for m in client.models.list()}
    assert {"small", "big", "embedder", "broken"} <= ids
    assert client.models.retrieve("small").id == "small"


def test_missing_and_wrong_key_are_401(stack):
    gw, _ = stack
    c = openai.OpenAI(api_key="sk-wrong", base_url=gw.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        c.chat.completions.create(model="small", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key" and "sk-wrong" not in info.value.body["message"]
    status, _, body = http("POST", gw.url + "/v1/chat/completions", {"model": "small", "messages": []})
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"


def test_unknown_model_is_404_listing_known_models(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    err = info.value.body
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert "small" in err["message"] and "big" in err["message"]


def test_malformed_json_and_invalid_params_are_400_naming_the_param(stack, client):
    gw, _ = stack
    auth = {"authorization": f"Bearer {MASTER}"}
    status, _, body = http("POST", gw.url + "/v1/chat/completions", raw=b'{"model": "small", "messages": [', headers=auth)
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]["message"]
    cases = [
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "temperature": 5}, "temperature"),
        ({"model": "small", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "small", "messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}, "max_tokens"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"model": "small", "messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),  # was a 500
        ({"model": "small", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": None,
                                          "tool_calls": [{"id": "c1", "type": "function"}]}]},
         "messages[1].tool_calls[0].function"),
        ({"model": "small", "messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, "messages[0].tool_calls[0].id"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "tool_choice": {
            "type": "function", "function": "get_weather"}, "tools": [{"type": "function", "function": {
                "name": "get_weather"}}]}, "tool_choice"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 5}}, "logit_bias"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"50256": 500}},
         "logit_bias"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}, "top_logprobs"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, "tool_choice"),
        ({"model": "small", "messages": [{"role": "user", "content": "x"}], "tool_choice": {
            "type": "function", "function": {"name": "get_time"}}, "tools": [{"type": "function", "function": {
                "name": "get_weather"}}]}, "tool_choice"),  # a function the request does not offer
    ]
    for body_, param in cases:
        status, _, body = http("POST", gw.url + "/v1/chat/completions", body_, headers=auth)
        err = json.loads(body)["error"]
        assert status == 400 and err["param"] == param, (body_, err)
        assert err["type"] == "invalid_request_error" and param in err["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="small", messages=[{"role": "user", "content": "x"}], top_p=3)
    assert info.value.body["param"] == "top_p"


def test_body_over_limit_is_413(stack):
    gw, _ = stack
    big = {"model": "small", "messages": [{"role": "user", "content": "x" * 100_000}]}
    status, _, body = http("POST", gw.url + "/v1/chat/completions", big, headers={"authorization": f"Bearer {MASTER}"})
    assert status == 413
    assert "limit" in json.loads(body)["error"]["message"]


def test_upstream_failures_become_502_503_504_and_429(client):
    cases = [("broken", openai.InternalServerError, 502), ("overloaded", openai.InternalServerError, 503),
             ("slow", openai.InternalServerError, 504), ("limited", openai.RateLimitError, 429)]
    for model, exc_type, status in cases:
        with pytest.raises(exc_type) as info:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == status, model
        assert "Traceback" not in str(info.value.body)
        if status == 429:
            assert info.value.response.headers["retry-after"] == "7"


def test_unknown_path_and_wrong_method(stack):
    gw, _ = stack
    status, _, body = http("GET", gw.url + "/v1/nothing-here")
    assert status == 404 and json.loads(body)["error"]["message"].startswith("Unknown path")
    status, _, body = http("GET", gw.url + "/v1/chat/completions")
    assert status == 405


def test_health_ready_openapi(stack):
    gw, _ = stack
    assert http("GET", gw.url + "/health")[0] == 200
    status, _, body = http("GET", gw.url + "/ready")
    assert status == 200 and json.loads(body)["storage"]["reachable"] is True
    status, _, body = http("GET", gw.url + "/openapi.json")
    doc = json.loads(body)
    assert {"/v1/chat/completions", "/v1/models", "/v1/embeddings", "/health", "/ready"} <= set(doc["paths"])
    from openapi_spec_validator import validate

    validate(doc)


def test_every_request_is_logged_with_cost_and_latency(stack, client):
    gw, _ = stack
    raw = client.chat.completions.with_raw_response.create(model="small", messages=[{"role": "user", "content": "log me"}])
    rid = raw.headers["x-request-id"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing-model", messages=[{"role": "user", "content": "x"}])

    def find():
        rows = {r["request_id"]: r for r in gw.requests_logged()}
        return rows if rid in rows and any(r["status"] == 404 for r in rows.values()) else None

    rows = wait_for(find)
    assert rows, "request log was not flushed"
    row = rows[rid]
    assert row["status"] == 200 and row["model_requested"] == "small" and row["model_used"] == "small"
    assert row["deployment"] == "small#0" and row["key_id"] == "master"
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["cost"] == pytest.approx((row["prompt_tokens"] * 1.0 + row["completion_tokens"] * 2.0) / 1e6)
    assert row["latency_ms"] > 0
    failed = [r for r in rows.values() if r["status"] == 404]
    assert failed and failed[0]["error_type"] == "model_not_found"
    # The CLI shows them too.
    out = subprocess.run([sys.executable, "-m", "switchboard", "logs", "--db", gw.db, "--json", "-n", "100"],
                         capture_output=True, text=True, check=True).stdout
    assert rid in out
    table = subprocess.run([sys.executable, "-m", "switchboard", "logs", "--db", gw.db],
                           capture_output=True, text=True, check=True).stdout
    assert "request id" in table and "small#0" in table


def test_secrets_never_logged(stack):
    gw, _ = stack
    assert "upstream-secret-key" not in gw.log()
    assert MASTER not in gw.log()
