"""The native Ollama adapter end to end: openai SDK -> gateway -> mock Ollama (/api/chat, NDJSON, /api/embed)."""

from __future__ import annotations

import json

import pytest

from provider_helpers import (ERROR_CASES, PNG_B64, PNG_DATA_URL, TIME_TOOL, WEATHER_TOOL, Stack, check_error_kind,
                              error_upstreams, finish_reasons, streamed_text, streamed_tool_calls, tool_round_trip,
                              usage_of)

REPLY = "Greetings from a local llama running in the mock."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    upstreams = {"llama3.2": {"reply": REPLY}, **error_upstreams("ollama")}
    s = Stack(tmp_path_factory.mktemp("ollama"), "ollama", upstreams, {"allow_private_image_urls": True})
    yield s
    s.stop()


def test_plain_chat_sends_stream_false_and_options(stack):
    completion = stack.chat(model="llama3.2", temperature=0.4, top_p=0.7, max_tokens=100, stop=["\n\n"], seed=3,
                            messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}])
    sent = stack.sent()
    assert sent["paths"].get("/api/chat") == 1
    assert sent["body"] == {"model": "llama3.2", "stream": False,
                            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
                            "options": {"temperature": 0.4, "top_p": 0.7, "seed": 3, "num_predict": 100,
                                        "stop": ["\n\n"]}}
    choice = completion.choices[0]
    assert choice.message.content == REPLY and choice.finish_reason == "stop"
    assert completion.usage.completion_tokens == (len(REPLY) + 3) // 4 and completion.usage.prompt_tokens > 0


def test_ndjson_stream(stack):
    chunks = stack.stream(model="llama3.2", messages=[{"role": "user", "content": "stream"}],
                          stream_options={"include_usage": True})
    assert stack.sent()["body"]["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    assert streamed_text(chunks) == REPLY and finish_reasons(chunks) == ["stop"]
    assert usage_of(chunks).completion_tokens == (len(REPLY) + 3) // 4


def test_tool_calls_with_object_arguments(stack):
    completion = stack.chat(model="llama3.2", tools=[WEATHER_TOOL, TIME_TOOL],
                            messages=[{"role": "user", "content": "weather?"}])
    assert stack.sent()["body"]["tools"] == [WEATHER_TOOL, TIME_TOOL]
    call = completion.choices[0].message.tool_calls[0]
    assert call.id and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock", "unit": "c"}
    assert completion.choices[0].finish_reason == "tool_calls"
    follow = stack.chat(model="llama3.2", tools=[WEATHER_TOOL], messages=tool_round_trip(call.id))
    messages = stack.sent()["body"]["messages"]
    assert messages[2] == {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert messages[3] == {"role": "tool", "content": json.dumps({"temp_c": 21, "sky": "clear"}),
                           "tool_name": "get_weather"}
    assert follow.choices[0].message.content == REPLY
    chunks = stack.stream(model="llama3.2", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "w?"}])
    calls = streamed_tool_calls(chunks)
    assert [c["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == {"city": "mock", "unit": "c"}
    assert finish_reasons(chunks) == ["tool_calls"]


def test_tool_choice(stack):
    stack.chat(model="llama3.2", tools=[WEATHER_TOOL], tool_choice="none", messages=[{"role": "user", "content": "x"}])
    assert "tools" not in stack.sent()["body"]
    status, error = stack.error(model="llama3.2", tools=[WEATHER_TOOL], tool_choice="required",
                                messages=[{"role": "user", "content": "x"}])
    assert status == 400 and error["param"] == "tool_choice"
    status, error = stack.error(model="llama3.2", messages=[{"role": "user", "content": "x"}], logprobs=True)
    assert (status, error["param"], error["code"]) == (400, "logprobs", "unsupported_parameter"), error


def test_images_are_bare_base64(stack):
    stack.chat(model="llama3.2", messages=[{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": stack.mock.url + "/images/pixel.png"}},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]}])
    assert stack.sent()["body"]["messages"][0] == {"role": "user", "content": "describe",
                                                   "images": [PNG_B64, PNG_B64]}


def test_response_format(stack):
    completion = stack.chat(model="llama3.2", messages=[{"role": "user", "content": "json"}],
                            response_format={"type": "json_object"})
    assert stack.sent()["body"]["format"] == "json"
    assert json.loads(completion.choices[0].message.content) == {"answer": REPLY}
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    stack.chat(model="llama3.2", messages=[{"role": "user", "content": "json"}],
               response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": schema}})
    assert stack.sent()["body"]["format"] == schema


def test_length_finish(stack):
    completion = stack.chat(model="llama3.2", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert completion.choices[0].finish_reason == "length"


@pytest.mark.parametrize("kind", sorted(ERROR_CASES))
def test_upstream_errors_map_to_openai_errors(stack, kind):
    check_error_kind(stack, "ollama", kind)


def test_model_not_found(tmp_path):
    s = Stack(tmp_path, "ollama", {"missing": {"faults": [{"kind": "status", "status": 404,
                                                           "message": 'model "missing" not found, try pulling it first'}]}},
              {})
    try:
        status, error = s.error(model="missing", messages=[{"role": "user", "content": "x"}])
        assert status == 404 and error["code"] == "upstream_model_not_found"
    finally:
        s.stop()


def test_embeddings_use_api_embed(stack):
    result = stack.client.embeddings.create(model="llama3.2", input=["a", "bb"])
    assert len(result.data) == 2 and result.usage.prompt_tokens == 2
    assert stack.sent()["body"] == {"model": "llama3.2", "input": ["a", "bb"]}


def test_mock_refuses_what_ollama_refuses(stack):
    from support import http

    url = stack.mock.url + "/api/chat"
    for bad in ({"model": "llama3.2", "stream": False, "messages": [{"role": "user", "content": "x",
                                                                     "images": ["data:image/png;base64,AAAA"]}]},
                {"model": "llama3.2", "stream": False, "messages": [{"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "f", "arguments": "{}"}}]}]},
                {"model": "llama3.2", "stream": False, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
                {"model": "llama3.2", "stream": False, "messages": [], "options": {"num_predict": "5"}}):
        status, _, raw = http("POST", url, bad)
        assert status == 400 and "error" in json.loads(raw), bad
