"""The Anthropic-format ingress: the official anthropic SDK as a client of the gateway's /v1/messages.

Every scenario runs against a model served by an OpenAI-format upstream and
one served by an Anthropic-format upstream; responses validate against the
SDK's own types, and the SDK's stream helpers work end to end.
"""

from __future__ import annotations

import base64
import json

import anthropic
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import TypeAdapter
from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-test-master-ingress"
REPLY = "Greetings from the mock upstream, nice to see you."
MODELS = ["via-openai", "via-anthropic"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ingress-anthropic")
    mock = MockProc(tmp, {
        "gpt-up": {"reply": REPLY}, "claude-up": {"reply": REPLY},
        "gpt-429": {"faults": [{"kind": "status", "status": 429, "rate": 1.0, "retry_after": 2, "message": "slow down"}]},
        "claude-529": {"faults": [{"kind": "status", "status": 529, "rate": 1.0, "message": "Overloaded"}]},
        "gpt-cut": {"reply": "one two three four five six", "faults": [{"kind": "cut", "after_chunks": 3}]},
    })
    openai_dep = {"provider": "openai", "base_url": mock.url + "/v1", "api_key": "${OPENAI_UP_KEY}"}
    anthropic_dep = {"provider": "anthropic", "base_url": mock.url, "api_key": "${ANTHROPIC_UP_KEY}"}
    config = {"auth": {"master_key": "${SB_MASTER}"}, "server": {"max_body_bytes": 1024 * 1024}, "models": {
        "via-openai": {"deployments": [{**openai_dep, "model": "gpt-up"}]},
        "via-anthropic": {"deployments": [{**anthropic_dep, "model": "claude-up"}]},
        "limited": {"deployments": [{**openai_dep, "model": "gpt-429"}]},
        "overloaded": {"deployments": [{**anthropic_dep, "model": "claude-529"}]},
        "cut": {"deployments": [{**openai_dep, "model": "gpt-cut"}]},
        "via-o3": {"deployments": [{**openai_dep, "model": "o3-up"}]},  # an OpenAI reasoning model, by its name
        "claude-priced": {"deployments": [{**anthropic_dep, "model": "claude-up"}],
                          "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_input_per_mtok": 0.3,
                                      "cache_write_per_mtok": 3.75}},
    }}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "OPENAI_UP_KEY": "sk-openai-up",
                                         "ANTHROPIC_UP_KEY": "sk-ant-up"})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    gw, _ = stack
    return anthropic.Anthropic(api_key=MASTER, base_url=gw.url, max_retries=0, timeout=15)


def upstream(mock) -> dict:
    return mock.stats()["last_request"]


@pytest.mark.parametrize("model", MODELS)
def test_plain_message_validates_against_sdk_types(client, stack, model):
    _, mock = stack
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=200, system="Be brief.", stop_sequences=["STOP"], metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5, "top_p": 0.8},  # sampling parameters older SDKs send as such
        messages=[{"role": "user", "content": "Hello"},
                  {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
                  {"role": "user", "content": [{"type": "text", "text": "Say something."}]}])
    assert raw.headers["request-id"].startswith("req_")
    message = Message.model_validate(json.loads(raw.http_response.content))
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == (len(REPLY) + 3) // 4 and message.usage.input_tokens > 0

    body = upstream(mock)
    if model == "via-openai":
        assert body["model"] == "gpt-up"
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                                    {"role": "assistant", "content": "Hi."},
                                    {"role": "user", "content": [{"type": "text", "text": "Say something."}]}]
        assert body["max_tokens"] == 200 and body["stop"] == ["STOP"] and body["user"] == "u-1"
        assert body["temperature"] == 0.5 and body["top_p"] == 0.8
    else:
        assert body["model"] == "claude-up" and body["system"] == [{"type": "text", "text": "Be brief."}]
        assert body["messages"][0] == {"role": "user", "content": [{"type": "text", "text": "Hello"}]}
        assert body["max_tokens"] == 200 and body["stop_sequences"] == ["STOP"]
        assert body["metadata"] == {"user_id": "u-1"}


@pytest.mark.parametrize("model", MODELS)
def test_stream_helper_end_to_end(client, model):
    with client.messages.stream(model=model, max_tokens=100,
                                messages=[{"role": "user", "content": "Stream please"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == REPLY and len(pieces) == len(REPLY.split(" "))
    Message.model_validate(final.model_dump())
    assert final.content[0].text == REPLY and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == (len(REPLY) + 3) // 4


@pytest.mark.parametrize("model", MODELS)
def test_raw_stream_events_in_anthropic_order(client, model):
    adapter = TypeAdapter(RawMessageStreamEvent)
    events = [adapter.validate_python(e.model_dump()) for e in client.messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "events"}], stream=True)]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens > 0


def test_the_stop_sequence_that_ended_a_claude_answer_is_named(client):
    sent = {"model": "via-anthropic", "max_tokens": 100, "stop_sequences": ["never", " mock"],
            "messages": [{"role": "user", "content": "Stop early"}]}
    message = client.messages.create(**sent)
    assert message.content[0].text == "Greetings from the"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " mock")
    with client.messages.stream(**sent) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", " mock")
    plain = client.messages.create(**{**sent, "stop_sequences": ["never"]})
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


def test_an_openai_upstream_cannot_say_which_stop_sequence_ended_it(client):
    message = client.messages.create(model="via-openai", max_tokens=100, stop_sequences=[" mock"],
                                     messages=[{"role": "user", "content": "Stop early"}])
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)  # OpenAI's finish "stop" says no more


WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_round_trip(client, stack, model):
    _, mock = stack
    first = client.messages.create(model=model, max_tokens=100, tools=[WEATHER],
                                   tool_choice={"type": "tool", "name": "get_weather"},
                                   messages=[{"role": "user", "content": "Weather in Oslo?"}])
    Message.model_validate(first.model_dump())
    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "mock"}
    body = upstream(mock)
    if model == "via-openai":
        assert body["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["input_schema"]}}]
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    else:
        assert body["tools"] == [WEATHER] and body["tool_choice"] == {"type": "tool", "name": "get_weather"}

    second = client.messages.create(model=model, max_tokens=100, tools=[WEATHER], tool_choice={"type": "none"},
                                    messages=[{"role": "user", "content": "Weather in Oslo?"},
                                              {"role": "assistant", "content": first.content},
                                              {"role": "user", "content": [
                                                  {"type": "tool_result", "tool_use_id": tool_use.id, "content": "Rain, 4C"},
                                                  {"type": "text", "text": "Summarise."}]}])
    assert second.content[0].text == REPLY and second.stop_reason == "end_turn"
    body = upstream(mock)
    if model == "via-openai":
        assert body["messages"][1]["tool_calls"][0]["id"] == tool_use.id
        assert json.loads(body["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"city": "mock"}
        assert body["messages"][2] == {"role": "tool", "tool_call_id": tool_use.id, "content": "Rain, 4C"}
        assert body["messages"][3] == {"role": "user", "content": [{"type": "text", "text": "Summarise."}]}
    else:
        assert body["messages"][1]["content"][-1] == {"type": "tool_use", "id": tool_use.id, "name": "get_weather",
                                                      "input": {"city": "mock"}}
        assert body["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": tool_use.id, "content": [{"type": "text", "text": "Rain, 4C"}]},
            {"type": "text", "text": "Summarise."}]


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_use_final_message(client, model):
    with client.messages.stream(model=model, max_tokens=100, tools=[WEATHER], tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = next(b for b in final.content if b.type == "tool_use")
    assert block.name == "get_weather" and block.input == {"city": "mock"}


@pytest.mark.parametrize("model", MODELS)
def test_image_blocks(client, stack, model):
    from switchboard.testing.mock_anthropic import PNG

    _, mock = stack
    data = base64.b64encode(PNG).decode()
    message = client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "text", "text": "What is this?"}]}])
    assert message.content[0].text == REPLY
    content = upstream(mock)["messages"][0]["content"]
    if model == "via-openai":
        assert content[0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}}
    else:
        assert content[0] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


@pytest.mark.parametrize("model", MODELS)
def test_structured_output_becomes_json_mode(client, stack, model):
    _, mock = stack
    schema = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}
    message = client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": "JSON"}],
                                     output_config={"format": {"type": "json_schema", "schema": schema}})
    body = upstream(mock)
    if model == "via-openai":
        assert body["response_format"] == {"type": "json_schema",
                                           "json_schema": {"name": "output", "schema": schema, "strict": True}}
        assert json.loads(message.content[0].text) == {"input": REPLY}
    else:
        assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
        assert body["tools"][0]["input_schema"] == schema
        assert json.loads(message.content[0].text) == {"input": "mock"}
    assert message.stop_reason == "end_turn"


def test_errors_come_back_in_anthropic_shape(client, stack):
    gw, _ = stack
    cases = [
        (lambda: client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]),
         anthropic.NotFoundError, 404, "not_found_error"),
        (lambda: anthropic.Anthropic(api_key="wrong", base_url=gw.url, max_retries=0).messages.create(
            model="via-openai", max_tokens=5, messages=[{"role": "user", "content": "x"}]),
         anthropic.AuthenticationError, 401, "authentication_error"),
        (lambda: client.messages.create(model="via-openai", max_tokens=5,
                                        messages=[{"role": "system", "content": "x"}]),
         anthropic.BadRequestError, 400, "invalid_request_error"),
        (lambda: client.messages.create(model="limited", max_tokens=5, messages=[{"role": "user", "content": "x"}]),
         anthropic.RateLimitError, 429, "rate_limit_error"),
        (lambda: client.messages.create(model="overloaded", max_tokens=5, messages=[{"role": "user", "content": "x"}]),
         anthropic.InternalServerError, 503, "overloaded_error"),
    ]
    for call, exc_type, status, error_type in cases:
        with pytest.raises(exc_type) as info:
            call()
        assert info.value.status_code == status
        assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == error_type, info.value.body
        if status == 429:
            assert info.value.response.headers["retry-after"] == "2"
    status, _, body = http("POST", gw.url + "/v1/messages", {"model": "via-openai", "messages": [
        {"role": "user", "content": "x"}]}, headers={"x-api-key": MASTER})
    assert status == 400 and json.loads(body)["error"]["message"].startswith("max_tokens:")
    status, _, body = http("POST", gw.url + "/v1/messages", raw=b"{not json", headers={"x-api-key": MASTER})
    assert status == 400 and json.loads(body)["type"] == "error"
    for bad, named in (({"tool_choice": {"type": "tool"}}, "tool_choice.name:"),  # checked without tools too
                       ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type:"),
                       ({"top_k": -1}, "top_k:"), ({"metadata": {"user_id": 5}}, "metadata.user_id:")):
        status, _, body = http("POST", gw.url + "/v1/messages", {"model": "via-openai", "max_tokens": 5, "messages": [
            {"role": "user", "content": "x"}], **bad}, headers={"x-api-key": MASTER})
        assert status == 400 and json.loads(body)["error"]["message"].startswith(named), body


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_use_input_that_is_not_an_object_is_refused_by_its_own_name(client, stack, model):
    gw, mock = stack
    before = mock.stats()["requests"]
    for bad_input in ("Paris", ["Paris"], 3):
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.create(model=model, max_tokens=50, tools=[{
                "name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
                messages=[{"role": "user", "content": "Weather?"},
                          {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                             "input": bad_input}]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                        "content": "sunny"}]}])
        assert info.value.body["error"]["message"].startswith("messages.1.content.0.input:"), info.value.body
    assert mock.stats()["requests"] == before, "refused before anything was sent upstream"


def test_errors_before_any_handler_come_back_in_anthropic_shape_too(client, stack):
    gw, _ = stack
    with pytest.raises(anthropic.APIStatusError) as info:  # the body is refused while it is read
        client.messages.create(model="via-openai", max_tokens=5,
                               messages=[{"role": "user", "content": "x" * (1024 * 1024 + 1)}])
    assert info.value.status_code == 413
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "request_too_large"
    assert "exceeds the limit of 1048576 bytes" in info.value.body["error"]["message"]
    status, _, body = http("GET", gw.url + "/v1/messages", headers={"x-api-key": MASTER})
    assert status == 405 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert json.loads(body)["type"] == "error"
    status, _, body = http("POST", gw.url + "/v1/messages", {"model": "via-openai", "max_tokens": 5,
                                                          "messages": [{"role": "user", "content": "x"}]})
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"
    assert "'x-api-key' header" in json.loads(body)["error"]["message"]
    status, _, body = http("PUT", gw.url + "/v1/chat/completions", body={})  # OpenAI's routes keep OpenAI's shape
    assert status == 405 and "type" not in json.loads(body) and json.loads(body)["error"]["message"]


def test_mid_stream_failure_is_an_error_event(client):
    with pytest.raises(anthropic.APIStatusError) as info, client.messages.stream(
            model="cut", max_tokens=50, messages=[{"role": "user", "content": "x"}]) as stream:
        for _ in stream.text_stream:
            pass
    assert "broke off" in str(info.value)


def test_count_tokens(client):
    count = client.messages.count_tokens(model="via-openai", system="Be brief.",
                                         messages=[{"role": "user", "content": "Hello there, how are you?"}])
    MessageTokensCount.model_validate(count.model_dump())
    assert count.input_tokens == (3 + 3) + (7 + 3) + 3  # o200k: 3 and 7 tokens; 3 frame each message and the reply
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
    thinking = client.messages.count_tokens(model="claude-priced", messages=[{"role": "user", "content": "x"}],
                                            thinking={"type": "enabled", "budget_tokens": 2048})
    assert thinking.input_tokens > 0  # no max_tokens to compare the budget with: count_tokens takes none


@pytest.mark.parametrize("model", ["claude-priced", "via-openai"])
def test_prompt_caching_reaches_claude_and_is_priced_apart(client, stack, model):
    gw, mock = stack
    ephemeral = {"type": "ephemeral"}
    manual = f"You review contracts for {model}. " * 40
    tools = [{**WEATHER, "cache_control": ephemeral}]
    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                  "input": {"city": "Oslo"}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Rain, 4C",
                                             "cache_control": ephemeral},
                                            {"type": "text", "text": "Summarise.", "cache_control": ephemeral}]}]

    def ask():
        return client.messages.with_raw_response.create(
            model=model, max_tokens=50, tools=tools, tool_choice={"type": "none"},
            system=[{"type": "text", "text": manual, "cache_control": ephemeral}], messages=history)

    first, second = ask(), ask()
    body = upstream(mock)
    if model == "via-openai":  # an OpenAI-format upstream refuses the marks: they are left out, and nothing is cached
        assert body["messages"][0] == {"role": "system", "content": [{"type": "text", "text": manual}]}
        assert "cache_control" not in json.dumps(body)
        assert second.parse().usage.cache_read_input_tokens == 0
        return
    # Claude receives every breakpoint where the client put it...
    assert body["system"] == [{"type": "text", "text": manual, "cache_control": ephemeral}]
    assert body["tools"][0]["cache_control"] == ephemeral
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Rain, 4C",
                                                                        "cache_control": ephemeral}]},
        {"type": "text", "text": "Summarise.", "cache_control": ephemeral}]
    # ... the first call writes the prefix to the cache, the second reads it, and the client sees both.
    written, read = first.parse().usage, second.parse().usage
    assert written.cache_creation_input_tokens > 100 and written.cache_read_input_tokens == 0
    assert read.cache_read_input_tokens == written.cache_creation_input_tokens and read.cache_creation_input_tokens == 0
    assert read.input_tokens == written.input_tokens
    # Writes cost 1.25x the input price, reads 0.1x: the charge follows the usage.
    for raw, usage in ((first, written), (second, read)):
        expected = (usage.input_tokens * 3.0 + usage.cache_creation_input_tokens * 3.75
                    + usage.cache_read_input_tokens * 0.3 + usage.output_tokens * 15.0) / 1e6
        assert float(raw.headers["x-switchboard-cost"]) == pytest.approx(expected, rel=1e-6)
    def logged():
        rows = [r for r in gw.requests_logged() if r["model_requested"] == "claude-priced"]
        return rows if len(rows) >= 2 else None

    assert [json.loads(r["extra"])["cache"] for r in wait_for(logged)[-2:]] == [
        {"read_tokens": 0, "write_tokens": written.cache_creation_input_tokens},
        {"read_tokens": read.cache_read_input_tokens, "write_tokens": 0}]

    # Automatic caching (a top-level cache_control) puts the breakpoint on the last block of the prompt.
    client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": manual}],
                           extra_body={"cache_control": ephemeral})
    assert upstream(mock)["messages"][-1]["content"] == [{"type": "text", "text": manual, "cache_control": ephemeral}]
    with pytest.raises(anthropic.BadRequestError, match="cache_control"):
        client.messages.create(model=model, max_tokens=50, system=[{"type": "text", "text": "x",
                                                                    "cache_control": {"type": "forever"}}],
                               messages=[{"role": "user", "content": "hi"}])


def test_extended_thinking_round_trips_through_claude(client, stack):
    from switchboard.testing.mock_anthropic import signature_of

    _, mock = stack
    thinking = {"type": "enabled", "budget_tokens": 2000}
    question = {"role": "user", "content": "Weather in Oslo?"}
    first = client.messages.create(model="via-anthropic", max_tokens=3000, thinking=thinking, tools=[WEATHER],
                                   messages=[question])
    assert upstream(mock)["thinking"] == thinking
    Message.model_validate(first.model_dump())
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature == signature_of(first.content[0].thinking)

    # The SDK's content sent back as is: Claude gets its signed thinking block at the head of the turn.
    tool_use = first.content[1]
    follow_up = [question, {"role": "assistant", "content": first.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "Rain"}]}]
    second = client.messages.create(model="via-anthropic", max_tokens=3000, thinking=thinking, tools=[WEATHER],
                                    tool_choice={"type": "none"}, messages=follow_up)
    assert upstream(mock)["messages"][1]["content"][0] == first.content[0].model_dump()
    assert [b.type for b in second.content] == ["thinking", "text"] and second.content[1].text == REPLY

    # Streamed, the SDK's helper assembles the same signed block from thinking and signature deltas.
    with client.messages.stream(model="via-anthropic", max_tokens=3000, thinking=thinking,
                                messages=[{"role": "user", "content": "think aloud"}]) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_message()
    assert {"thinking", "signature"} <= kinds
    assert final.content[0].type == "thinking" and final.content[0].signature == signature_of(final.content[0].thinking)
    assert final.content[1].text == REPLY

    # A model that does not think answers without it; a bad budget is refused in Anthropic's words.
    plain = client.messages.create(model="via-openai", max_tokens=3000, thinking=thinking, messages=[question])
    assert "thinking" not in upstream(mock) and plain.content[0].text == REPLY
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        client.messages.create(model="via-anthropic", max_tokens=3000, messages=[question],
                               thinking={"type": "enabled", "budget_tokens": 100})


def test_adaptive_thinking_and_effort_reach_claude_and_become_a_reasoning_effort_elsewhere(client, stack):
    _, mock = stack
    question = {"role": "user", "content": "Think, then answer."}
    message = client.messages.create(model="via-anthropic", max_tokens=3000, thinking={"type": "adaptive"},
                                     output_config={"effort": "max"}, messages=[question])
    assert upstream(mock)["thinking"] == {"type": "adaptive"} and upstream(mock)["output_config"] == {"effort": "max"}
    assert [b.type for b in message.content] == ["thinking", "text"]
    client.messages.create(model="via-anthropic", max_tokens=100, output_config={"effort": "low"}, messages=[question])
    assert "thinking" not in upstream(mock) and upstream(mock)["output_config"] == {"effort": "low"}

    client.messages.create(model="via-o3", max_tokens=3000, thinking={"type": "adaptive"},
                           output_config={"effort": "max"}, messages=[question])
    body = upstream(mock)
    assert body["reasoning_effort"] == "xhigh" and not {"thinking", "effort", "output_config"} & set(body)
    client.messages.create(model="via-o3", max_tokens=3000, thinking={"type": "adaptive"}, messages=[question])
    assert "reasoning_effort" not in upstream(mock)  # adaptive alone: the model's own default
    client.messages.create(model="via-openai", max_tokens=100, output_config={"effort": "high"}, messages=[question])
    assert not {"thinking", "effort", "output_config", "reasoning_effort"} & set(upstream(mock))  # a chat model
    with pytest.raises(anthropic.BadRequestError, match="output_config.effort"):
        client.messages.create(model="via-anthropic", max_tokens=100, output_config={"effort": "extreme"},
                               messages=[question])


def test_the_clients_beta_features_reach_a_claude_upstream(client, stack):
    _, mock = stack
    question = [{"role": "user", "content": "Hello"}]
    client.beta.messages.create(model="via-anthropic", max_tokens=20, messages=question,
                                betas=["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"])
    assert mock.stats()["last_headers"]["anthropic-beta"] == "context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    client.messages.create(model="via-anthropic", max_tokens=20, messages=question)
    assert "anthropic-beta" not in mock.stats()["last_headers"]
    client.beta.messages.create(model="via-openai", max_tokens=20, messages=question, betas=["context-1m-2025-08-07"])
    assert "anthropic_beta" not in upstream(mock) and "anthropic-beta" not in mock.stats()["last_headers"]


def test_anthropic_ingress_is_logged(client, stack):
    gw, _ = stack
    client.messages.create(model="via-anthropic", max_tokens=20, messages=[{"role": "user", "content": "log me"}])
    rows = wait_for(lambda: [r for r in gw.requests_logged() if r["ingress"] == "anthropic" and r["status"] == 200])
    assert rows and rows[-1]["completion_tokens"] > 0


def test_openapi_lists_messages_paths(stack):
    gw, _ = stack
    status, _, body = http("GET", gw.url + "/openapi.json")
    paths = json.loads(body)["paths"]
    assert status == 200 and "post" in paths["/v1/messages"] and "post" in paths["/v1/messages/count_tokens"]


def test_one_hour_cache_writes_are_reported_and_priced_apart(client, stack):
    gw, mock = stack
    hour, minutes = {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral", "ttl": "5m"}
    manual = "You review leases, clause by clause. " * 40
    raw = client.messages.with_raw_response.create(
        model="claude-priced", max_tokens=50, system=[{"type": "text", "text": manual, "cache_control": hour}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Clause 4 says rent rises yearly. " * 10,
                                                "cache_control": minutes}]}])
    sent = upstream(mock)
    assert sent["system"][0]["cache_control"] == hour and sent["messages"][0]["content"][0]["cache_control"] == minutes
    usage = raw.parse().usage
    by_ttl = usage.cache_creation
    # the system prompt is written for an hour, the message after it for five minutes
    assert by_ttl.ephemeral_1h_input_tokens > 100 and by_ttl.ephemeral_5m_input_tokens > 50
    assert by_ttl.ephemeral_1h_input_tokens + by_ttl.ephemeral_5m_input_tokens == usage.cache_creation_input_tokens
    # one-hour writes cost twice the input price ($6 here), five-minute ones 1.25x ($3.75)
    expected = (usage.input_tokens * 3.0 + by_ttl.ephemeral_5m_input_tokens * 3.75
                + by_ttl.ephemeral_1h_input_tokens * 6.0 + usage.output_tokens * 15.0) / 1e6
    assert float(raw.headers["x-switchboard-cost"]) == pytest.approx(expected, rel=1e-6)
    rid = raw.headers["x-request-id"]
    row = wait_for(lambda: next((r for r in gw.requests_logged() if r["request_id"] == rid), None))
    assert json.loads(row["extra"])["cache"] == {"read_tokens": 0, "write_tokens": usage.cache_creation_input_tokens,
                                                 "write_1h_tokens": by_ttl.ephemeral_1h_input_tokens}
    # one-hour entries must come first (tools, system, messages): Claude's own 400 reaches the client
    with pytest.raises(anthropic.BadRequestError, match="ttl='1h' cache_control block must not come after"):
        client.messages.create(model="claude-priced", max_tokens=50,
                               system=[{"type": "text", "text": manual, "cache_control": minutes}],
                               messages=[{"role": "user", "content": [{"type": "text", "text": "Go.",
                                                                       "cache_control": hour}]}])
