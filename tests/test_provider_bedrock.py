"""The Bedrock adapter end to end: openai SDK -> gateway -> mock Bedrock runtime (Converse, SigV4, event streams)."""

from __future__ import annotations

import json

import pytest

from provider_helpers import (CONTENT_POLICY, ERROR_CASES, MASTER, PNG_B64, PNG_DATA_URL, TIME_TOOL, WEATHER_TOOL,
                              Stack, check_error_kind, error_upstreams, finish_reasons, streamed_text,
                              streamed_tool_calls, tool_round_trip, usage_of)
from switchboard.testing.mock_bedrock import GUARDRAIL_MESSAGE, MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
REPLY = "A reply from the mock Bedrock model, signed and sealed."
LINES = "First line.\nSecond line."
CLAUDE_LINES = "anthropic.claude-lines-v1:0"
LLAMA_LINES = "meta.llama-lines-v1:0"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    upstreams = {
        MODEL_ID: {"reply": REPLY},
        CLAUDE_LINES: {"reply": LINES},
        LLAMA_LINES: {"reply": LINES},
        "guarded": {"safety_block": "prompt"},
        "filtered": {"safety_block": "output"},
        "filter-error": {"faults": [{"kind": "status", "status": 400,
                                     "message": "Output blocked by content filtering policy"}]},
        "stream-error": {"faults": [{"kind": "status", "status": 424, "message": "model stream broke"}]},
        **error_upstreams("bedrock"),
    }
    s = Stack(tmp_path_factory.mktemp("bedrock"), "bedrock", upstreams, {
        "region": "eu-west-3", "aws_access_key_id": "${AWS_KEY_ID}", "aws_secret_access_key": "${AWS_SECRET}",
        "allow_private_image_urls": True},
        env={"AWS_KEY_ID": MOCK_ACCESS_KEY_ID, "AWS_SECRET": MOCK_SECRET_ACCESS_KEY},
        overrides={"guarded": {"guardrail": {"id": "gr-abc123", "version": 2, "stream_processing": "async"}}})
    yield s
    s.stop()


def test_plain_chat_is_signed_and_translated(stack):
    completion = stack.chat(model=MODEL_ID, temperature=0.5, top_p=0.8, max_completion_tokens=300, stop="###",
                            messages=[{"role": "system", "content": "Be kind."},
                                      {"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Hello"},
                                      {"role": "user", "content": "Bye"}])
    sent = stack.sent()
    assert sent["paths"].get("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse") == 1
    auth = sent["headers"]["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={MOCK_ACCESS_KEY_ID}/")
    assert "/eu-west-3/bedrock/aws4_request" in auth and "x-amz-date" in sent["headers"]
    assert sent["body"] == {
        "system": [{"text": "Be kind."}],
        "messages": [{"role": "user", "content": [{"text": "Hi"}]},
                     {"role": "assistant", "content": [{"text": "Hello"}]},
                     {"role": "user", "content": [{"text": "Bye"}]}],
        "inferenceConfig": {"maxTokens": 300, "temperature": 0.5, "topP": 0.8, "stopSequences": ["###"]},
        "additionalModelResponseFieldPaths": ["/delta/stop_sequence"]}  # Claude's own field: which one stopped it
    choice = completion.choices[0]
    assert choice.message.content == REPLY and choice.finish_reason == "stop"
    assert completion.usage.completion_tokens == (len(REPLY) + 3) // 4
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_event_stream_is_decoded_chunk_by_chunk(stack):
    chunks = stack.stream(model=MODEL_ID, messages=[{"role": "user", "content": "stream"}],
                          stream_options={"include_usage": True})
    assert stack.sent()["paths"].get("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream") == 1
    assert stack.sent()["headers"]["accept"] == "application/vnd.amazon.eventstream"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert streamed_text(chunks) == REPLY
    assert finish_reasons(chunks) == ["stop"]
    assert usage_of(chunks).completion_tokens == (len(REPLY) + 3) // 4


def test_tool_use_and_tool_result(stack):
    completion = stack.chat(model=MODEL_ID, messages=[{"role": "user", "content": "Weather?"}],
                            tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="required")
    config = stack.sent()["body"]["toolConfig"]
    assert config["toolChoice"] == {"any": {}}
    assert config["tools"][0] == {"toolSpec": {"name": "get_weather", "description": "Current weather for a city",
                                               "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]}}}
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "mock", "unit": "c"}

    follow = stack.chat(model=MODEL_ID, messages=tool_round_trip(call.id), tools=[WEATHER_TOOL])
    body = stack.sent()["body"]
    assert body["messages"][1] == {"role": "assistant", "content": [{"toolUse": {
        "toolUseId": call.id, "name": "get_weather", "input": {"city": "Paris"}}}]}
    assert body["messages"][2] == {"role": "user", "content": [{"toolResult": {
        "toolUseId": call.id, "content": [{"json": {"temp_c": 21, "sky": "clear"}}]}}]}
    assert follow.choices[0].message.content == REPLY


@pytest.mark.parametrize("offer", [{}, {"tools": [WEATHER_TOOL], "tool_choice": "none"}], ids=["no-tools", "none"])
def test_a_tool_history_in_a_request_that_offers_no_tools_is_written_as_text(stack, offer):
    # Converse refuses toolUse/toolResult blocks without a toolConfig (the mock too): an agent's last,
    # tool-less turn ("now summarise") must still be answered, and the model must not be able to call a tool.
    messages = [*tool_round_trip("call_1"), {"role": "user", "content": "Now summarise."}]
    for stream in (False, True):
        if stream:
            assert streamed_text(stack.stream(model=MODEL_ID, messages=messages, **offer)) == REPLY
        else:
            assert stack.chat(model=MODEL_ID, messages=messages, **offer).choices[0].message.content == REPLY
        body = stack.sent()["body"]
        assert "toolConfig" not in body
        assert body["messages"][1] == {"role": "assistant", "content": [
            {"text": '[tool call call_1: get_weather {"city":"Paris"}]'}]}
        assert body["messages"][2] == {"role": "user", "content": [
            {"text": '[result of tool call call_1]\n{"temp_c":21,"sky":"clear"}'}, {"text": "Now summarise."}]}


def test_named_tool_choice_and_streamed_tool_use(stack):
    chunks = stack.stream(model=MODEL_ID, messages=[{"role": "user", "content": "time?"}],
                          tools=[WEATHER_TOOL, TIME_TOOL], tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert stack.sent()["body"]["toolConfig"]["toolChoice"] == {"tool": {"name": "get_time"}}
    calls = streamed_tool_calls(chunks)
    assert [c["name"] for c in calls] == ["get_time"] and calls[0]["id"].startswith("tooluse_")
    assert json.loads(calls[0]["arguments"]) == {}, "get_time takes no arguments"
    assert finish_reasons(chunks) == ["tool_calls"]


def test_images_become_image_blocks(stack):
    stack.chat(model=MODEL_ID, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": stack.mock.url + "/images/pixel.png"}},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
        {"type": "text", "text": "what is this?"}]}])
    blocks = stack.sent()["body"]["messages"][0]["content"]
    image = {"image": {"format": "png", "source": {"bytes": PNG_B64}}}
    assert blocks == [image, image, {"text": "what is this?"}]


def test_response_format(stack):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    completion = stack.chat(model=MODEL_ID, messages=[{"role": "user", "content": "json"}],
                            response_format={"type": "json_schema", "json_schema": {"name": "Answer", "schema": schema}})
    fmt = stack.sent()["body"]["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema" and fmt["structure"]["jsonSchema"]["name"] == "Answer"
    assert json.loads(fmt["structure"]["jsonSchema"]["schema"]) == schema
    assert json.loads(completion.choices[0].message.content) == {"answer": REPLY}
    status, error = stack.error(model=MODEL_ID, messages=[{"role": "user", "content": "json"}],
                                response_format={"type": "json_object"})
    assert status == 400 and error["type"] == "invalid_request_error" and error["param"] == "response_format"


def test_cache_breakpoints_become_cache_points(stack):
    ephemeral = {"type": "ephemeral"}
    manual = "Answer from the operations manual. " * 30
    ask = dict(model=MODEL_ID, tool_choice="auto",
               tools=[{**WEATHER_TOOL, "cache_control": ephemeral}],
               messages=[{"role": "system", "content": [{"type": "text", "text": manual, "cache_control": ephemeral}]},
                         {"role": "user", "content": [{"type": "text", "text": "Weather?", "cache_control": ephemeral},
                                                      {"type": "text", "text": "Be brief."}]}])
    first = stack.chat(**ask)
    body = stack.sent()["body"]
    point = {"cachePoint": {"type": "default"}}
    assert body["system"] == [{"text": manual}, point]
    assert body["toolConfig"]["tools"][1] == point and "toolSpec" in body["toolConfig"]["tools"][0]
    assert body["messages"][0]["content"] == [{"text": "Weather?"}, point, {"text": "Be brief."}]
    second = stack.chat(**ask)
    written = first.usage.prompt_tokens_details.cache_write_tokens
    assert written > len(manual) // 4 and first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == written
    assert second.usage.prompt_tokens_details.cache_write_tokens == 0
    assert second.usage.prompt_tokens == first.usage.prompt_tokens



def test_cache_point_ttls_are_passed_on_and_one_hour_writes_priced_apart(stack):
    hour, minutes = {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral", "ttl": "5m"}
    manual = "Answer from the safety handbook, chapter by chapter. " * 30
    ask = dict(model=MODEL_ID, messages=[
        {"role": "system", "content": [{"type": "text", "text": manual, "cache_control": hour}]},
        {"role": "user", "content": [{"type": "text", "text": "Which chapter covers ladders? " * 8,
                                      "cache_control": minutes}]}])
    raw = stack.client.chat.completions.with_raw_response.create(**ask)
    body = stack.sent()["body"]
    assert body["system"] == [{"text": manual}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    assert body["messages"][0]["content"][1] == {"cachePoint": {"type": "default", "ttl": "5m"}}
    usage = raw.parse().usage
    details = usage.prompt_tokens_details
    written, for_an_hour = details.cache_write_tokens, details.model_extra["cache_write_1h_tokens"]
    # the handbook is written for an hour, the question for five minutes
    assert for_an_hour > len(manual) // 5 and written - for_an_hour > 20
    # $1 per million input tokens here and no cache prices set: writes at the input price, one-hour writes at twice it
    expected = ((usage.prompt_tokens - written) * 1.0 + (written - for_an_hour) * 1.0 + for_an_hour * 2.0
                + usage.completion_tokens * 2.0) / 1e6
    assert float(raw.headers["x-switchboard-cost"]) == pytest.approx(expected, rel=1e-6)
    streamed = stack.stream(**ask, stream_options={"include_usage": True})[-1].usage
    assert streamed.prompt_tokens_details.cached_tokens == written  # the second call reads what the first wrote
    # a one-hour point after a five-minute one is Bedrock's own 400
    ask["messages"][0]["content"][0]["cache_control"], ask["messages"][1]["content"][0]["cache_control"] = minutes, hour
    status, error = stack.error(**ask)
    assert status == 400 and "1h cache point cannot follow a 5m one" in error["message"]

def test_extended_thinking_through_converse(stack):
    from switchboard.testing.mock_anthropic import signature_of

    question = {"role": "user", "content": "Weather in Paris?"}
    first = stack.chat(model=MODEL_ID, messages=[question], tools=[WEATHER_TOOL], reasoning_effort="low",
                       temperature=0.3)
    body = stack.sent()["body"]
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert "temperature" not in body["inferenceConfig"] and body["inferenceConfig"]["maxTokens"] > 1024
    message = first.choices[0].message
    thought = message.model_extra["reasoning_content"]
    assert message.model_extra["thinking_blocks"] == [{"type": "thinking", "thinking": thought,
                                                       "signature": signature_of(thought)}]
    # Sent back as is, the signed block leads the assistant turn as reasoningContent, and the loop goes on.
    result = {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": '{"temp_c": 21}'}
    answer = stack.chat(model=MODEL_ID, messages=[question, message, result], tools=[WEATHER_TOOL],
                        reasoning_effort="low")
    assert stack.sent()["body"]["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": thought, "signature": signature_of(thought)}}}
    assert answer.choices[0].message.content == REPLY
    chunks = stack.stream(model=MODEL_ID, messages=[question], reasoning_effort="low")
    deltas = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    streamed = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert [b for d in deltas for b in d.get("thinking_blocks") or ()] == [
        {"type": "thinking", "thinking": streamed, "signature": signature_of(streamed)}]
    assert streamed_text(chunks) == REPLY
    # Adaptive thinking and Claude's effort (an Anthropic-format client's) go to Claude as its own fields
    adaptive = stack.chat(model=MODEL_ID, messages=[question], extra_body={
        "thinking": {"type": "adaptive"}, "effort": "high", "anthropic_beta": ["context-1m-2025-08-07"]})
    assert stack.sent()["body"]["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "anthropic_beta": ["context-1m-2025-08-07"]}
    assert adaptive.choices[0].message.model_extra["reasoning_content"]


def test_temperature_above_one_is_refused_before_sending(stack):
    stack.mock.reset()
    status, error = stack.error(model=MODEL_ID, messages=[{"role": "user", "content": "x"}], temperature=1.5)
    assert status == 400 and error["param"] == "temperature"
    assert stack.mock.stats()["requests"] == 0
    status, error = stack.error(model=MODEL_ID, messages=[{"role": "user", "content": "x"}], logprobs=True)
    assert (status, error["param"], error["code"]) == (400, "logprobs", "unsupported_parameter"), error
    assert stack.mock.stats()["requests"] == 0


def test_max_tokens_stop_reason(stack):
    completion = stack.chat(model=MODEL_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert completion.choices[0].finish_reason == "length"


def test_guardrail_and_content_filter_stop_reasons(stack):
    completion = stack.chat(model="guarded", messages=[{"role": "user", "content": "bad"}])
    # The deployment's guardrail goes on every call; the stream-only processing mode only on streams.
    assert stack.sent()["body"]["guardrailConfig"] == {"guardrailIdentifier": "gr-abc123", "guardrailVersion": "2",
                                                       "trace": "disabled"}
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == GUARDRAIL_MESSAGE
    chunks = stack.stream(model="guarded", messages=[{"role": "user", "content": "bad"}])
    assert stack.sent()["body"]["guardrailConfig"]["streamProcessingMode"] == "async"
    assert finish_reasons(chunks) == ["content_filter"] and streamed_text(chunks) == GUARDRAIL_MESSAGE
    stack.chat(model=MODEL_ID, messages=[{"role": "user", "content": "fine"}])
    assert "guardrailConfig" not in stack.sent()["body"]
    chunks = stack.stream(model="filtered", messages=[{"role": "user", "content": "bad"}])
    assert finish_reasons(chunks) == ["content_filter"]


def test_content_filter_validation_error_is_content_policy(stack):
    status, error = stack.error(model="filter-error", messages=[{"role": "user", "content": "x"}])
    assert (status, error["type"], error["code"]) == CONTENT_POLICY


@pytest.mark.parametrize("kind", sorted(ERROR_CASES))
def test_upstream_errors_map_to_openai_errors(stack, kind):
    check_error_kind(stack, "bedrock", kind)


def test_in_stream_exception_ends_the_stream_with_an_error_event(stack):
    from support import http
    from provider_helpers import MASTER

    status, _, raw = http("POST", stack.gateway.url + "/v1/chat/completions",
                          {"model": "stream-error", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                          headers={"authorization": f"Bearer {MASTER}"})
    assert status == 200
    events = [json.loads(line[6:]) for line in raw.decode().split("\n") if line.startswith("data: {")]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[1]["choices"][0]["delta"]["content"], "a word went out first: too late to fail over"
    assert events[-1]["error"]["code"] == "stream_interrupted"
    assert "modelStreamErrorException" in events[-1]["error"]["message"]


def test_wrong_secret_is_rejected_by_signature_check(tmp_path):
    s = Stack(tmp_path, "bedrock", {MODEL_ID: {}}, {
        "aws_access_key_id": "${AWS_KEY_ID}", "aws_secret_access_key": "${AWS_SECRET}"},
        env={"AWS_KEY_ID": MOCK_ACCESS_KEY_ID, "AWS_SECRET": "not-the-secret"})
    try:
        status, error = s.error(model=MODEL_ID, messages=[{"role": "user", "content": "x"}])
        assert status == 502 and error["code"] == "upstream_authentication_failed"
        assert "InvalidSignatureException" in error["message"]
    finally:
        s.stop()


def test_default_endpoint_and_signed_headers():
    """Without base_url the regional endpoint is used; model ids are percent-encoded in the path."""
    from switchboard.config import Deployment, Secret
    from switchboard.http.client import HttpClient
    from switchboard.providers.bedrock import BedrockProvider

    provider = BedrockProvider(HttpClient())
    dep = Deployment(id="d", model_name="m", provider="bedrock", upstream_model=MODEL_ID, base_url="",
                     options={"aws_access_key_id": Secret("AKIA", "t"), "aws_secret_access_key": Secret("s", "t"),
                              "aws_session_token": Secret("tok", "t"), "region": "us-east-1"})
    url = provider.url(dep, "converse")
    assert url == "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    headers = provider.headers(dep, url, b"{}", "application/json")
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIA/")
    assert "/us-east-1/bedrock/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "tok" and "host" not in headers


def test_large_body_is_signed_with_a_precomputed_payload_hash(stack):
    """Bodies over 64 KiB are hashed off the event loop; the mock checks the declared hash and the signature."""
    import base64

    from switchboard.testing.mock_anthropic import PNG

    big = "data:image/png;base64," + base64.b64encode(PNG + b"\0" * 100_000).decode()
    completion = stack.chat(model=MODEL_ID, messages=[{"role": "user", "content": [
        {"type": "text", "text": "big one"}, {"type": "image_url", "image_url": {"url": big}}]}])
    assert completion.choices[0].message.content == REPLY
    headers = stack.sent()["headers"]
    assert len(headers["x-amz-content-sha256"]) == 64
    assert "x-amz-content-sha256" in headers["authorization"]


def test_mock_refuses_what_bedrock_refuses(stack):
    """Unsigned requests and malformed Converse bodies get AWS's errors from the mock."""
    from support import http

    url = stack.mock.url + "/model/m/converse"
    status, headers, _ = http("POST", url, {"messages": [{"role": "user", "content": [{"text": "x"}]}]})
    assert status == 403 and headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException")
    bearer = {"authorization": "Bearer bedrock-api-key"}
    for bad in ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]},
                {"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]},
                {"messages": [{"role": "user", "content": [{"text": " "}]}]},
                {"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"temperature": 1.5}},
                {"messages": [{"role": "user", "content": [{"text": "x"}]}], "max_tokens": 5}):
        status, headers, _ = http("POST", url, bad, headers=bearer)
        assert status == 400 and headers["x-amzn-errortype"].startswith("ValidationException"), bad


def test_a_blank_system_message_is_left_out(stack):
    stack.chat(model=MODEL_ID, messages=[{"role": "system", "content": "   "}, {"role": "user", "content": "hi"}])
    assert "system" not in stack.sent()["body"]  # Bedrock refuses a blank system block


@pytest.mark.parametrize("stream", [False, True])
def test_the_stop_sequence_that_ended_a_claude_answer_reaches_an_anthropic_client(stack, stream):
    import anthropic

    client = anthropic.Anthropic(api_key=MASTER, base_url=stack.gateway.url, max_retries=0, timeout=15)
    # " mock" is complete before "the mock Bedrock", which begins first: a model writing left to right stops there
    sent = {"model": MODEL_ID, "max_tokens": 100, "stop_sequences": ["never", "the mock Bedrock", " mock"],
            "messages": [{"role": "user", "content": "Stop early"}]}
    if stream:
        with client.messages.stream(**sent) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**sent)
    assert message.content[0].text == "A reply from the"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " mock")
    plain = client.messages.create(**{**sent, "stop_sequences": ["never"]})
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_claude_gets_no_whitespace_only_stop_sequence_and_the_gateway_applies_it(stack, stream):
    """Claude refuses "\n" as a stop sequence on its own API; through Converse the gateway applies such sequences
    itself, as it does for Anthropic's API. Other Bedrock models get them as sent."""
    ask = {"model": CLAUDE_LINES, "messages": [{"role": "user", "content": "hi"}], "stop": ["\n", "###"]}
    if stream:
        chunks = stack.stream(**ask)
        text, finish = streamed_text(chunks), finish_reasons(chunks)
    else:
        choice = stack.chat(**ask).choices[0]
        text, finish = choice.message.content, [choice.finish_reason]
    assert (text, finish) == ("First line.", ["stop"])
    assert stack.sent()["body"]["inferenceConfig"]["stopSequences"] == ["###"]
    stack.chat(**{**ask, "model": LLAMA_LINES})
    assert stack.sent()["body"]["inferenceConfig"]["stopSequences"] == ["\n", "###"]
