"""OpenAI's legacy Completions API (`/v1/completions`) through the gateway, with the official openai SDK: served as
a one-message chat by any model (an OpenAI-format and an Anthropic upstream here), streamed, with logprobs,
replayed under an Idempotency-Key, and refusing what it cannot do in OpenAI's error shape."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types import Completion

from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-legacy-master-0123456789"
REPLY = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("legacy")
    mock = MockProc(tmp, {"gpt-up": {"reply": REPLY}, "claude-up": {"reply": "Claude says hello."}})
    pricing = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    config = {"auth": {"master_key": "${SB_MASTER}"},
              "models": {"gpt": {"deployments": [{"provider": "openai", "model": "gpt-up",
                                                  "base_url": mock.url + "/v1"}], "pricing": pricing},
                         "claude": {"deployments": [{"provider": "anthropic", "model": "claude-up",
                                                     "base_url": mock.url, "api_key": "${ANT_KEY}"}],
                                    "pricing": pricing}},
              "routers": {"auto": {"strong": "claude", "weak": "gpt"}}}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "ANT_KEY": "sk-ant-test"})
    try:
        yield gw, mock
    finally:
        gw.stop()
        mock.stop()


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(api_key=MASTER, base_url=stack[0].url + "/v1", max_retries=0, timeout=10)


def test_a_completion_is_a_one_message_chat_cut_at_16_tokens_by_default(stack, client):
    gw, mock = stack
    raw = client.completions.with_raw_response.create(model="gpt", prompt="Count to twenty:")
    completion = Completion.model_validate(json.loads(raw.content))
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    text = completion.choices[0].text  # OpenAI's default max_tokens is 16: the mock's reply is cut there
    assert REPLY.startswith(text) and len(text) < len(REPLY) and completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 16
    sent = mock.stats()["last_request"]
    assert sent["messages"] == [{"role": "user", "content": "Count to twenty:"}] and sent["max_tokens"] == 16
    assert "prompt" not in sent
    full = client.completions.create(model="gpt", prompt=["Count to twenty:"], max_tokens=100, temperature=0.5)
    assert full.choices[0].text == REPLY and full.choices[0].finish_reason == "stop"
    entry = wait_for(lambda: [e for e in gw.requests_logged() if e["request_id"] == raw.headers["x-request-id"]])[0]
    assert entry["endpoint"] == "completions" and entry["status"] == 200 and entry["cost"] > 0


def test_any_model_serves_it_here_an_anthropic_one(client):
    completion = client.completions.create(model="claude", prompt="Say hello", max_tokens=50)
    assert completion.choices[0].text == "Claude says hello." and completion.choices[0].finish_reason == "stop"
    assert completion.model and completion.usage.prompt_tokens > 0


def test_a_router_serves_it_too(stack, client):
    gw, _ = stack
    raw = client.completions.with_raw_response.create(model="auto", prompt="What is 2 + 2?", max_tokens=50)
    routed_to = raw.headers["x-switchboard-routed-to"]
    assert routed_to in ("gpt", "claude") and raw.parse().choices[0].text
    entry = wait_for(lambda: [e for e in gw.requests_logged() if e["request_id"] == raw.headers["x-request-id"]])[0]
    assert entry["router"] == "auto" and entry["model_used"] == routed_to and entry["router_score"] is not None


def test_a_streamed_completion_with_usage(client):
    stream = client.completions.create(model="claude", prompt="Say hello", max_tokens=50, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "text_completion" and c.id.startswith("cmpl-") for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Claude says hello."
    with_text = [c for c in chunks if c.choices]
    assert with_text[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_n_completions_each_with_its_index(client):
    completion = client.completions.create(model="gpt", prompt="Twice", max_tokens=100, n=2, best_of=2)
    assert [(c.index, c.text) for c in completion.choices] == [(0, REPLY), (1, REPLY)]
    texts = {0: "", 1: ""}
    for chunk in client.completions.create(model="gpt", prompt="Twice", max_tokens=100, n=2, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert texts == {0: REPLY, 1: REPLY}


def test_logprobs_come_back_in_the_legacy_shape(stack, client):
    _, mock = stack
    completion = client.completions.create(model="gpt", prompt="Count", max_tokens=3, logprobs=2)
    logprobs = completion.choices[0].logprobs
    assert "".join(logprobs.tokens) == completion.choices[0].text and REPLY.startswith(completion.choices[0].text)
    assert len(logprobs.tokens) >= 2 and logprobs.token_logprobs == [-0.05] * len(logprobs.tokens)
    starts = [sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))]
    assert logprobs.text_offset == starts
    sent = mock.stats()["last_request"]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2


def test_an_idempotent_retry_gets_the_same_completion(client):
    first = client.completions.create(model="gpt", prompt="Once", max_tokens=5,
                                      extra_headers={"Idempotency-Key": "legacy-once"})
    again = client.completions.with_raw_response.create(model="gpt", prompt="Once", max_tokens=5,
                                                        extra_headers={"Idempotency-Key": "legacy-once"})
    replayed = Completion.model_validate(json.loads(again.content))
    assert again.headers.get("idempotent-replayed") == "true"
    assert replayed.id == first.id and replayed.object == "text_completion" and replayed.choices == first.choices


@pytest.mark.parametrize("extra, param, code", [
    ({"prompt": "x", "echo": True}, "echo", "unsupported_parameter"),
    ({"prompt": "x", "suffix": "end"}, "suffix", "unsupported_parameter"),
    ({"prompt": "x", "best_of": 3}, "best_of", "unsupported_parameter"),
    ({"prompt": ["a", "b"]}, "prompt", "unsupported_parameter"),
    ({"prompt": [1, 2, 3]}, "prompt", "unsupported_parameter"),
    ({"prompt": 42}, "prompt", "invalid_value"),
    ({}, "prompt", "invalid_value"),
    ({"prompt": "x", "logprobs": 9}, "logprobs", "invalid_value"),
    ({"prompt": "x", "temperature": 7}, "temperature", "invalid_value"),
])
def test_what_it_cannot_do_is_a_400_naming_the_parameter(stack, extra, param, code):
    gw, _ = stack
    status, _, body = http("POST", gw.url + "/v1/completions", {"model": "gpt", **extra},
                           headers={"authorization": f"Bearer {MASTER}"})
    error = json.loads(body)["error"]
    assert status == 400 and error["param"] == param and error["code"] == code, error


def test_an_unknown_model_is_a_404_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="nope", prompt="x")
    assert err.value.body["code"] == "model_not_found"
