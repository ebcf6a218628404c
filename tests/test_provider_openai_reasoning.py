"""OpenAI's reasoning models (o-series, gpt-5) behind every ingress: the mock refuses max_tokens and sampling
parameters on them, and reasoning_effort on chat models, as OpenAI does; the gateway sends what each takes."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from provider_helpers import MASTER, Stack, streamed_text

from support import http

UPSTREAMS = {"o3": {}, "gpt-5-mini": {}, "gpt-4o": {}, "my-reasoner": {}, "o4-mini": {}}
OVERRIDES = {"my-reasoner": {"reasoning": True}, "o4-mini": {"reasoning": False}}
QUESTION = [{"role": "user", "content": "How many primes are there below 30?"}]
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "logit_bias")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("openai-reasoning"), "openai", UPSTREAMS, {"api_key": "${UP_KEY}"},
              base_path="/v1", overrides=OVERRIDES, env={"UP_KEY": "sk-up"})
    yield s
    s.stop()


def sent(stack: Stack) -> dict:
    return stack.sent()["body"]


def test_chat_request_to_a_reasoning_model_sends_what_it_takes(stack):
    raw = stack.client.chat.completions.with_raw_response.create(
        model="o3", messages=QUESTION, max_tokens=1000, temperature=0.5, top_p=0.9, presence_penalty=0.1,
        logprobs=False, logit_bias={"1": 1}, reasoning_effort="high")
    body = sent(stack)
    assert body["max_completion_tokens"] == 1000 and "max_tokens" not in body
    assert body["reasoning_effort"] == "high"
    assert not set(SAMPLING) & set(body), body
    usage = raw.parse().usage
    assert usage.completion_tokens_details.reasoning_tokens == 512
    assert usage.completion_tokens > 512
    # reasoning is billed as output: 1 $/Mtok in, 2 $/Mtok out (the Stack's pricing)
    cost = float(raw.headers["x-switchboard-cost"])
    assert cost == pytest.approx((usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6, rel=1e-6)


@pytest.mark.parametrize("model", ["o3", "my-reasoner"])
def test_a_reasoning_model_gets_no_stop_and_the_gateway_applies_it(stack, model):
    ask = {"model": model, "messages": QUESTION, "stop": ["\n", " simulated"]}  # the mock refuses stop on o3
    choice = stack.chat(**ask).choices[0]
    assert "stop" not in sent(stack)
    assert (choice.message.content, choice.finish_reason) == ("This is a", "stop")
    assert choice.model_extra["stop_sequence"] == " simulated"
    chunks = stack.stream(**ask)
    assert "stop" not in sent(stack) and streamed_text(chunks) == "This is a"
    finishes = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [(f.finish_reason, f.model_extra["stop_sequence"]) for f in finishes] == [("stop", " simulated")]


def test_logprobs_from_a_reasoning_model_are_a_clear_400(stack):
    before = stack.mock.stats()["requests"]
    status, error = stack.error(model="o3", messages=QUESTION, logprobs=True, top_logprobs=2)
    assert status == 400 and error["param"] == "logprobs" and "reasoning models" in error["message"], error
    assert stack.mock.stats()["requests"] == before, "refused before anything was sent upstream"


def test_a_chat_model_given_both_limits_gets_max_completion_tokens_alone(stack):
    # OpenAI refuses the two together ("Setting 'max_tokens' and 'max_completion_tokens' at the same time is not
    # supported"), and the mock with it; every other provider takes max_completion_tokens before max_tokens
    answer = stack.chat(model="gpt-4o", messages=QUESTION, max_tokens=5, max_completion_tokens=80)
    body = sent(stack)
    assert body["max_completion_tokens"] == 80 and "max_tokens" not in body
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    chunks = stack.stream(model="gpt-4o", messages=QUESTION, max_tokens=5, max_completion_tokens=80)
    assert "max_tokens" not in sent(stack) and streamed_text(chunks) == answer.choices[0].message.content


def test_a_client_max_completion_tokens_wins_and_effort_none_keeps_sampling(stack):
    answer = stack.chat(model="gpt-5-mini", messages=QUESTION, max_tokens=50, max_completion_tokens=80)
    body = sent(stack)
    assert body["max_completion_tokens"] == 80 and "max_tokens" not in body
    # as on OpenAI, the (medium) reasoning used the whole allowance: no text, cut for length
    assert answer.choices[0].finish_reason == "length" and not answer.choices[0].message.content
    assert answer.usage.completion_tokens == 80
    stack.chat(model="gpt-5-mini", messages=QUESTION, temperature=0.3, reasoning_effort="none")
    body = sent(stack)
    assert body["temperature"] == 0.3 and body["reasoning_effort"] == "none"


def test_streamed_chat_to_a_reasoning_model_reports_reasoning_tokens(stack):
    chunks = stack.stream(model="gpt-5-mini", messages=QUESTION, max_tokens=400, temperature=0.2,
                          reasoning_effort="low", stream_options={"include_usage": True})
    body = sent(stack)
    assert body["max_completion_tokens"] == 400 and "temperature" not in body and "max_tokens" not in body
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details.reasoning_tokens == 64


def test_anthropic_client_with_thinking_reaches_a_reasoning_model(stack):
    client = anthropic.Anthropic(api_key=MASTER, base_url=stack.gateway.url, max_retries=0, timeout=15)
    message = client.messages.create(model="o3", max_tokens=3000, extra_body={"temperature": 0.3, "top_p": 0.9},
                                     thinking={"type": "enabled", "budget_tokens": 2048}, messages=QUESTION)
    body = sent(stack)
    assert body["max_completion_tokens"] == 3000 and body["reasoning_effort"] == "medium"
    assert not {"max_tokens", "thinking", "temperature", "top_p"} & set(body), body
    assert message.content[-1].type == "text" and message.content[-1].text
    assert message.usage.output_tokens > 192  # the medium effort's reasoning counts as output
    # a bigger budget asks for more effort; streamed through the SDK's helper
    with client.messages.stream(model="o3", max_tokens=9000, messages=QUESTION,
                                thinking={"type": "enabled", "budget_tokens": 8000}) as stream:
        final = stream.get_final_message()
    assert sent(stack)["reasoning_effort"] == "high"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 512


def test_responses_client_reaches_a_reasoning_model(stack):
    client = openai.OpenAI(api_key=MASTER, base_url=stack.gateway.url + "/v1", max_retries=0, timeout=15)
    response = client.responses.create(model="o3", input="How many primes are there below 30?",
                                       max_output_tokens=400, temperature=0.7, reasoning={"effort": "low"})
    body = sent(stack)
    assert body["max_completion_tokens"] == 400 and body["reasoning_effort"] == "low"
    assert "temperature" not in body and "max_tokens" not in body
    assert response.status == "completed" and response.output_text
    assert response.usage.output_tokens_details.reasoning_tokens == 64


def test_chat_models_get_no_reasoning_effort(stack):
    answer = stack.chat(model="gpt-4o", messages=QUESTION, reasoning_effort="low", max_tokens=100, temperature=0.4)
    body = sent(stack)
    assert "reasoning_effort" not in body
    assert body["max_tokens"] == 100 and body["temperature"] == 0.4
    assert answer.choices[0].message.content


def test_the_deployment_setting_overrides_the_name(stack):
    stack.chat(model="my-reasoner", messages=QUESTION, max_tokens=100, temperature=0.4)
    body = sent(stack)
    assert body["max_completion_tokens"] == 100 and "temperature" not in body and "max_tokens" not in body
    # `reasoning: false` on a model the upstream treats as a reasoning model: its refusal reaches the client
    status, _, raw = http("POST", stack.gateway.url + "/v1/chat/completions",
                          {"model": "o4-mini", "messages": QUESTION, "max_tokens": 100},
                          headers={"authorization": f"Bearer {MASTER}"}, timeout=15)
    error = json.loads(raw)["error"]
    assert status == 400 and "max_completion_tokens" in error["message"], error


def test_reasoning_setting_must_be_a_boolean(tmp_path):
    from test_config import error_of
    message = error_of(tmp_path, """
        models:
          m:
            deployments:
              - provider: openai
                api_key: ${KEY}
                reasoning: "yes"
        """)
    assert "reasoning" in message and "true or false" in message
