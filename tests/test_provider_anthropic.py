"""The Anthropic provider end to end: the openai SDK -> gateway -> mock Anthropic Messages API.

Upstream side: the mock records the last request, checked field by field
against Anthropic's documented Messages format (and the mock itself refuses
malformed requests the way Anthropic does). Client side: responses and chunks
validate against the openai SDK's types.
"""

from __future__ import annotations

import base64
import json

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from provider_helpers import PNG_DATA_URL
from support import GatewayProc, MockProc, http

MASTER = "sk-test-master-anthropic"
UPSTREAM_KEY = "sk-ant-upstream-key"
REPLY = "Bonjour from the mock Claude model, how can I help today?"
LINES = "First line here.\n Second line,\n\nthird part Human: fourth"  # stream pieces split at the spaces
FAULTS = {  # upstream status -> (OpenAI SDK exception, client status, OpenAI error code)
    400: (openai.BadRequestError, 400, "upstream_bad_request"),
    401: (openai.APIStatusError, 502, "upstream_authentication_failed"),
    403: (openai.APIStatusError, 502, "upstream_authentication_failed"),
    404: (openai.NotFoundError, 404, "upstream_model_not_found"),
    413: (openai.BadRequestError, 400, "upstream_bad_request"),
    429: (openai.RateLimitError, 429, "rate_limit_exceeded"),
    500: (openai.InternalServerError, 502, "upstream_server_error"),
    529: (openai.InternalServerError, 503, "upstream_overloaded"),
    504: (openai.InternalServerError, 504, "upstream_timeout"),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("anthropic")
    behaviours = {
        "claude-mock": {"reply": REPLY},
        "claude-sonnet-4-5": {"reply": REPLY},
        "claude-small-window": {"reply": REPLY, "context_window": 5},
        "claude-refuses": {"reply": REPLY, "safety_block": "output"},
        "claude-lines": {"reply": LINES},
        "claude-cut": {"reply": "one two three four five six seven", "faults": [{"kind": "cut", "after_chunks": 3}]},
    }
    for status in FAULTS:
        behaviours[f"claude-err{status}"] = {"faults": [{"kind": "status", "status": status, "rate": 1.0,
                                                         "message": f"injected {status}",
                                                         **({"retry_after": 3} if status == 429 else {})}]}
    mock = MockProc(tmp, behaviours)

    def model(upstream, **extra):
        return {"deployments": [{"provider": "anthropic", "model": upstream, "base_url": mock.url,
                                 "api_key": "${ANTHROPIC_KEY}", **extra}]}

    models = {
        "claude": model("claude-mock", allow_private_image_urls=True),
        "claude-strict-images": model("claude-mock"),
        "sonnet": model("claude-sonnet-4-5"),
        "small-window": model("claude-small-window"),
        "refuses": model("claude-refuses"),
        "cut": model("claude-cut"),
        "lines": model("claude-lines"),
        # an OpenAI-format model on the same mock: where a Claude history lands after a fallback
        "gpt": {"deployments": [{"provider": "openai", "model": "gpt-4o-mock", "base_url": mock.url + "/v1",
                                 "api_key": "${ANTHROPIC_KEY}"}]},
    }
    for status in FAULTS:
        models[f"err{status}"] = model(f"claude-err{status}")
    gw = GatewayProc(tmp, {"auth": {"master_key": "${SB_MASTER}"}, "models": models},
                     env={"SB_MASTER": MASTER, "ANTHROPIC_KEY": UPSTREAM_KEY})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    gw, _ = stack
    return openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=15)


def sent(mock) -> dict:
    return mock.stats()["last_request"]


def test_plain_chat_translates_system_turns_and_parameters(client, stack):
    _, mock = stack
    raw = client.chat.completions.with_raw_response.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "developer", "content": "Answer in French."},
                  {"role": "user", "content": "Hello"},
                  {"role": "assistant", "content": "Hi! What do you need?"},
                  {"role": "user", "content": "A greeting,"},
                  {"role": "user", "content": [{"type": "text", "text": "please."}]}],
        max_tokens=300, temperature=0.3, top_p=0.9, stop=["\n\nHuman:"], user="user-42")
    completion = ChatCompletion.model_validate(json.loads(raw.content))
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == (len(REPLY) + 3) // 4
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens

    stats = mock.stats()
    headers = stats["last_headers"]
    assert headers["x-api-key"] == UPSTREAM_KEY and "authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert stats["by_path"]["/v1/messages"] >= 1
    body = stats["last_request"]
    assert body == {
        "model": "claude-mock",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi! What do you need?"}]},
            {"role": "user", "content": [{"type": "text", "text": "A greeting,"}, {"type": "text", "text": "please."}]},
        ],
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.3,
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
    }


def test_max_tokens_defaults_from_catalog_or_4096(client, stack):
    _, mock = stack
    client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "hi"}])
    assert sent(mock)["max_tokens"] == 64000  # claude-sonnet-4-5's max output in the catalog
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}],
                                   max_completion_tokens=77)
    assert sent(mock)["max_tokens"] == 77
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert sent(mock)["max_tokens"] == 4096


def test_stop_reasons_map_to_finish_reasons(client):
    by_stop = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}],
                                             stop=["Claude"])
    assert by_stop.choices[0].finish_reason == "stop"
    assert by_stop.choices[0].message.content == "Bonjour from the mock "
    by_length = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=4)
    assert by_length.choices[0].finish_reason == "length"
    assert by_length.usage.completion_tokens <= 4


def test_empty_stop_sequences_are_dropped_and_whitespace_ones_kept_back(client, stack):
    _, mock = stack
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stop=["", "END"])
    assert sent(mock)["stop_sequences"] == ["END"]  # "" stops nothing; Claude refuses it
    for stop, upstream in (("\n", None), (["\n\n", "Human:"], ["Human:"]), (" ", None)):
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stop=stop)
        assert sent(mock).get("stop_sequences") == upstream  # Claude refuses whitespace-only ones


@pytest.mark.parametrize("stop, text, sequence", [
    ("\n", "First line here.", "\n"),
    (["\n\n", "Human:"], "First line here.\n Second line,", "\n\n"),
    (["\t", "\n "], "First line here.", "\n "),  # "\n" ends one stream piece, " " begins the next
    ([" ", "\n"], "First", " "),
])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_whitespace_stop_sequences_are_applied_by_the_gateway(client, stack, stop, text, sequence, stream):
    _, mock = stack
    ask = {"model": "lines", "messages": [{"role": "user", "content": "hi"}], "stop": stop}
    if not stream:
        completion = client.chat.completions.create(**ask)
        assert completion.choices[0].message.content == text
        assert completion.choices[0].finish_reason == "stop"
        assert completion.choices[0].model_extra["stop_sequence"] == sequence
        generated = LINES.split("Human:")[0] if "Human:" in stop else LINES  # Claude itself stops at "Human:"
        assert completion.usage.completion_tokens == (len(generated) + 3) // 4
        return
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    finishes = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [f.finish_reason for f in finishes] == ["stop"] and finishes[0].model_extra["stop_sequence"] == sequence
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens > 0
    assert chunks[-1].usage.completion_tokens >= (len(text) + 3) // 4
    assert all(c.id == chunks[0].id for c in chunks)


def test_a_whitespace_stop_sequence_never_cuts_a_json_answer(client, stack):
    schema = {"type": "object", "properties": {"note": {"const": "two words"}}, "required": ["note"]}
    form = {"type": "json_schema", "json_schema": {"name": "note", "schema": schema}}
    for stream in (False, True):
        ask = {"model": "lines", "messages": [{"role": "user", "content": "hi"}], "stop": " ", "response_format": form}
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**ask, stream=True)
                           if c.choices)
        else:
            text = client.chat.completions.create(**ask).choices[0].message.content
        assert json.loads(text) == {"note": "two words"}


def test_temperature_above_one_is_clamped(client, stack):
    _, mock = stack
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], temperature=1.7)
    assert sent(mock)["temperature"] == 1.0


def test_prompt_cache_tokens_map_to_cached_tokens(client, stack):
    _, mock = stack
    system = "You are a careful assistant. " * 20
    ephemeral = {"type": "ephemeral"}
    ask = [{"role": "system", "content": [{"type": "text", "text": system, "cache_control": ephemeral}]},
           {"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": ephemeral},
                                        {"type": "image_url", "image_url": {"url": PNG_DATA_URL},
                                         "cache_control": ephemeral}]}]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}},
              "cache_control": ephemeral}]
    first = client.chat.completions.create(model="claude", messages=ask, tools=tools, tool_choice="none")
    body = sent(mock)
    assert body["system"] == [{"type": "text", "text": system, "cache_control": ephemeral}]
    assert [b.get("cache_control") for b in body["messages"][0]["content"]] == [ephemeral, ephemeral]
    assert body["tools"][0]["cache_control"] == ephemeral
    second = client.chat.completions.create(model="claude", messages=ask, tools=tools, tool_choice="none")
    prefix = first.usage.prompt_tokens_details.cache_write_tokens
    assert prefix > (len(system) + 3) // 4 and first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == prefix
    assert second.usage.prompt_tokens_details.cache_write_tokens == 0
    assert first.usage.prompt_tokens == second.usage.prompt_tokens  # input + cache_read + cache_creation


def test_streamed_chat_chunk_by_chunk(client, stack):
    _, mock = stack
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "stream it"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = [ChatCompletionChunk.model_validate(c.model_dump()) for c in stream]
    assert sent(mock)["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == len(REPLY.split(" "))
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == (len(REPLY) + 3) // 4
    assert all(c.id == chunks[0].id and c.id.startswith("msg_") for c in chunks)


def test_stream_without_include_usage_hides_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                                 stream=True))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]


def test_tool_calling_request_response_and_round_trip(client, stack):
    _, mock = stack
    completion = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Time in Paris?"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, parallel_tool_calls=False)
    ChatCompletion.model_validate(completion.model_dump())
    body = sent(mock)
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_time" and call.id.startswith("toolu_")
    assert json.loads(call.function.arguments) == {}, "get_time takes no arguments"

    for openai_choice, anthropic_choice in (("auto", {"type": "auto"}), ("required", {"type": "any"}),
                                            ("none", {"type": "none"})):
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], tools=TOOLS,
                                       tool_choice=openai_choice)
        assert sent(mock)["tool_choice"] == anthropic_choice

    follow = client.chat.completions.create(model="claude", tools=TOOLS, messages=[
        {"role": "user", "content": "Time in Paris?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}},
            {"id": "toolu_second", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "12:00"},
        {"role": "tool", "tool_call_id": "toolu_second", "content": [{"type": "text", "text": "sunny"}]},
        {"role": "user", "content": "Thanks, summarise."}], tool_choice="none")
    assert follow.choices[0].message.content == REPLY
    assert sent(mock)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Time in Paris?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": call.id, "name": "get_time", "input": {"tz": "CET"}},
            {"type": "tool_use", "id": "toolu_second", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "12:00"}]},
            {"type": "tool_result", "tool_use_id": "toolu_second", "content": [{"type": "text", "text": "sunny"}]},
            {"type": "text", "text": "Thanks, summarise."}]}]


def test_streamed_tool_call(client):
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "weather?"}],
                                            tools=TOOLS, stream=True)
    chunks = [ChatCompletionChunk.model_validate(c.model_dump()) for c in stream]
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("toolu_") and deltas[0].function.name == "get_weather" and deltas[0].index == 0
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "mock"}
    assert len(deltas) == 3  # the start, then the two input_json_delta pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_json_mode_is_a_forced_tool_call(client, stack):
    _, mock = stack
    schema = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}
    completion = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    body = sent(mock)
    assert body["tools"] == [{"name": "json_response", "input_schema": schema,
                              "description": "Respond with a JSON object matching the 'answer' schema."}]
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert completion.choices[0].finish_reason == "stop" and not completion.choices[0].message.tool_calls
    assert json.loads(completion.choices[0].message.content) == {"input": "mock"}

    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "JSON"}],
                                            response_format={"type": "json_object"}, stream=True)
    chunks = list(stream)
    assert sent(mock)["tools"][0]["input_schema"] == {"type": "object"}
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)) == {}
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_images_from_url_and_data_url(client, stack):
    from switchboard.testing.mock_anthropic import PNG

    _, mock = stack
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    completion = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": mock.url + "/images/pixel.png"}},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}}]}])
    ChatCompletion.model_validate(completion.model_dump())
    content = sent(mock)["messages"][0]["content"]
    expected_source = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    assert content == [{"type": "text", "text": "What is in these images?"},
                       {"type": "image", "source": expected_source},
                       {"type": "image", "source": expected_source}]
    # redirects are followed (and re-checked)
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": mock.url + "/images/redirect.png"}}]}])
    assert sent(mock)["messages"][0]["content"][0]["source"] == expected_source


def test_bad_images_are_clear_400s(client, stack):
    _, mock = stack
    before = mock.stats()["by_path"].get("/v1/messages", 0)
    cases = [
        ("claude-strict-images", mock.url + "/images/pixel.png", "non-public address 127.0.0.1"),
        ("claude", mock.url + "/images/page.html", "did not return an image"),
        ("claude", mock.url + "/images/missing.png", "HTTP 404"),
        ("claude", mock.url + "/images/big.png", "larger than"),
        ("claude", "data:image/png;base64,@@@", "invalid base64"),
        ("claude", "ftp://example.com/x.png", "http(s) URL or a data: URL"),
    ]
    for model, url, needle in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
                {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]}])
        err = info.value.body
        assert info.value.status_code == 400 and err["type"] == "invalid_request_error", (url, err)
        assert needle in err["message"] and err["param"] == "messages[0].content[1].image_url.url", (url, err)
    assert mock.stats()["by_path"].get("/v1/messages", 0) == before, "nothing reached the upstream"


@pytest.mark.parametrize("status", sorted(FAULTS))
def test_anthropic_errors_become_openai_errors(client, status):
    exc_type, client_status, code = FAULTS[status]
    with pytest.raises(exc_type) as info:
        client.chat.completions.create(model=f"err{status}", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == client_status
    assert info.value.body["code"] == code and f"injected {status}" in info.value.body["message"]
    if status == 429:
        assert info.value.response.headers["retry-after"] == "3"


def test_prompt_too_long_is_context_length_exceeded(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="small-window", messages=[{"role": "user", "content": "x" * 200}])
    assert info.value.body["code"] == "context_length_exceeded" and "prompt is too long" in info.value.body["message"]


def test_refusal_is_content_filter(client):
    completion = client.chat.completions.create(model="refuses", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].finish_reason == "content_filter"
    chunks = list(client.chat.completions.create(model="refuses", messages=[{"role": "user", "content": "x"}],
                                                 stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_stream_cut_midway_is_an_error_for_the_client(client):
    stream = client.chat.completions.create(model="cut", messages=[{"role": "user", "content": "x"}], stream=True)
    got: list = []
    with pytest.raises(openai.APIError):
        got.extend(stream)
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "one two"


def test_unsupported_parameters_are_clear_400s(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], n=2)
    assert info.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=[{"role": "system", "content": "only system"}])
    assert info.value.body["param"] == "messages"


def test_mock_refuses_malformed_anthropic_requests(stack):
    """The mock is strict enough to catch translation bugs, with Anthropic-shaped errors."""
    _, mock = stack
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    ok = {"model": "claude-mock", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    assert http("POST", mock.url + "/v1/messages", ok, headers)[0] == 200
    bad = [
        ({k: v for k, v in ok.items() if k != "max_tokens"}, "max_tokens"),
        ({**ok, "messages": [{"role": "system", "content": "s"}, *ok["messages"]]}, "Unexpected role"),
        ({**ok, "messages": [*ok["messages"], *ok["messages"]]}, "alternate"),
        ({**ok, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "type"),
        ({**ok, "messages": [{"role": "user", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": "image/jpeg", "data": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()}}]}]},
         "does not match the provided media type"),
        ({**ok, "stop": ["x"]}, "Extra inputs"),
        ({**ok, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools.0"),
        ({**ok, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}, {"role": "user", "content": "b"}]},
         "without tool_result"),
    ]
    for body, needle in bad:
        status, _, raw = http("POST", mock.url + "/v1/messages", body, headers)
        data = json.loads(raw)
        assert status == 400 and data["type"] == "error" and data["error"]["type"] == "invalid_request_error", data
        assert needle in data["error"]["message"], (needle, data)
    status, _, raw = http("POST", mock.url + "/v1/messages", ok, {"anthropic-version": "2023-06-01"})
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"


def test_refusal_and_usage_translation_units():
    """Stop reasons the mock never produces (refusal), through the pure translation functions."""
    from switchboard.providers.anthropic import StreamTranslator, to_completion

    completion = to_completion({"id": "msg_1", "type": "message", "model": "m", "stop_reason": "refusal",
                                "content": [{"type": "text", "text": "I can't help with that."}],
                                "usage": {"input_tokens": 5, "output_tokens": 3, "cache_creation_input_tokens": 7,
                                          "cache_read_input_tokens": 11,
                                          "cache_creation": {"ephemeral_5m_input_tokens": 2,
                                                             "ephemeral_1h_input_tokens": 5}}}, json_mode=False)
    ChatCompletion.model_validate(completion)
    assert completion["choices"][0]["finish_reason"] == "content_filter"
    assert completion["usage"] == {"prompt_tokens": 23, "completion_tokens": 3, "total_tokens": 26,
                                   "prompt_tokens_details": {"cached_tokens": 11, "cache_write_tokens": 7,
                                                             "cache_write_1h_tokens": 5}}
    translator = StreamTranslator(json_mode=False)
    translator.feed({"type": "message_start", "message": {"id": "msg_2", "model": "m", "usage": {"input_tokens": 9}}})
    finish = translator.feed({"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                              "usage": {"output_tokens": 4}})
    assert finish[0]["choices"][0]["finish_reason"] == "length"
    final = translator.feed({"type": "message_stop"})[0]
    ChatCompletionChunk.model_validate(final)
    assert final["usage"]["prompt_tokens"] == 9 and final["usage"]["completion_tokens"] == 4


def test_reasoning_effort_becomes_extended_thinking_and_comes_back_signed(client, stack):
    from switchboard.testing.mock_anthropic import signature_of

    _, mock = stack
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    question = {"role": "user", "content": "Weather in Oslo?"}
    first = client.chat.completions.create(model="claude", messages=[question], tools=[weather],
                                           reasoning_effort="medium", temperature=0.2)
    body = sent(mock)
    # Claude thinks only at its own temperature; the budget counts inside max_tokens, which leaves it room.
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048} and "temperature" not in body
    assert body["max_tokens"] > 2048
    message = first.choices[0].message
    thought = message.model_extra["reasoning_content"]
    assert thought and message.model_extra["thinking_blocks"] == [
        {"type": "thinking", "thinking": thought, "signature": signature_of(thought)}]
    assert message.tool_calls and first.choices[0].finish_reason == "tool_calls"

    # The SDK message sent back as is keeps the tool loop going: the signed block leads the assistant turn.
    result = {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "Rain, 4C"}
    answer = client.chat.completions.create(model="claude", messages=[question, message, result], tools=[weather],
                                            tool_choice="none", reasoning_effort="medium")
    assert sent(mock)["messages"][1]["content"][0] == {"type": "thinking", "thinking": thought,
                                                       "signature": signature_of(thought)}
    assert answer.choices[0].message.content == REPLY
    # Without it Claude refuses the turn, and the client hears why.
    bare = message.model_dump(exclude_none=True)
    del bare["thinking_blocks"]
    with pytest.raises(openai.BadRequestError, match="must start with a thinking block"):
        client.chat.completions.create(model="claude", messages=[question, bare, result], tools=[weather],
                                       tool_choice="none", reasoning_effort="medium")

    # The same history reaching an OpenAI-format model (a fallback, say) goes without Claude's marks, which
    # OpenAI refuses; so does `thinking`.
    client.chat.completions.create(model="gpt", messages=[question, message, result], tools=[weather],
                                   tool_choice="none", extra_body={"thinking": {"type": "enabled",
                                                                               "budget_tokens": 2048}})
    body = sent(mock)
    assert "thinking" not in body and not {"thinking_blocks", "reasoning_content"} & set(body["messages"][1])
    assert body["messages"][1]["tool_calls"][0]["id"] == message.tool_calls[0].id

    # Streamed: the reasoning arrives as deltas, then the whole signed block.
    chunks = list(client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "think"}],
                                                 reasoning_effort="low", stream=True))
    deltas = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    streamed = "".join(d.get("reasoning_content") or "" for d in deltas)
    blocks = [b for d in deltas for b in d.get("thinking_blocks") or ()]
    assert streamed and blocks == [{"type": "thinking", "thinking": streamed, "signature": signature_of(streamed)}]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY

    # No room left to think inside a small max_tokens: the answer comes without thinking; "none" asks for none.
    client.chat.completions.create(model="claude", messages=[question], reasoning_effort="high", max_tokens=900)
    assert "thinking" not in sent(mock) and sent(mock)["max_tokens"] == 900
    client.chat.completions.create(model="claude", messages=[question], reasoning_effort="none")
    assert "thinking" not in sent(mock)
    with pytest.raises(openai.BadRequestError, match="reasoning_effort"):
        client.chat.completions.create(model="claude", messages=[question], reasoning_effort="extreme")


def test_an_explicit_thinking_budget_gets_room_from_the_default_max_tokens(client, stack):
    _, mock = stack
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "think"}],
                                   extra_body={"thinking": {"type": "enabled", "budget_tokens": 5000}})
    body = sent(mock)
    assert body["thinking"]["budget_tokens"] == 5000 and body["max_tokens"] > 5000  # the default is 4,096


def test_a_max_tokens_refusal_that_links_the_context_window_docs_is_not_a_context_error():
    from switchboard import errors

    linked = ("max_tokens must be greater than thinking.budget_tokens. Please consult our documentation at "
              "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size")
    assert errors.kind_for_status(400, linked) == errors.BAD_REQUEST
    for too_long in ("prompt is too long: 300000 tokens > 200000 maximum",
                     "This model's maximum context length is 8192 tokens.",
                     "The input token count (9) exceeds the maximum number of tokens allowed (8)."):
        assert errors.kind_for_status(400, too_long) == errors.CONTEXT_LENGTH
