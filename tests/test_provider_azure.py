"""The Azure OpenAI adapter end to end: openai SDK -> gateway -> mock Azure OpenAI (deployment URLs, api-key, filters)."""

from __future__ import annotations

import json

import pytest

from provider_helpers import (CONTENT_POLICY, ERROR_CASES, PNG_DATA_URL, WEATHER_TOOL, Stack, check_error_kind,
                              error_upstreams, finish_reasons, streamed_text, streamed_tool_calls, tool_round_trip,
                              usage_of)

REPLY = "Hello from an Azure deployment of a mock model."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    upstreams = {
        "gpt4o-prod": {"reply": REPLY},
        "gpt4o-entra": {"reply": REPLY},
        "gpt4o-v1": {"reply": REPLY},
        "gpt4o-filtered": {"safety_block": "prompt"},
        "gpt4o-cut": {"safety_block": "output"},
        **error_upstreams("azure"),
    }
    s = Stack(tmp_path_factory.mktemp("azure"), "azure", upstreams, {"api_key": "${AZURE_KEY}"},
              env={"AZURE_KEY": "az-key-123"},
              overrides={"gpt4o-entra": {"api_key_header": "authorization", "api_version": "2025-01-01-preview"},
                         "gpt4o-v1": {"api_version": "v1"}})
    yield s
    s.stop()


def test_plain_chat_uses_deployment_url_version_and_api_key(stack):
    completion = stack.chat(model="gpt4o-prod", temperature=0.1, messages=[{"role": "system", "content": "s"},
                                                                          {"role": "user", "content": "hi"}])
    sent = stack.sent()
    assert sent["paths"].get("/openai/deployments/gpt4o-prod/chat/completions") == 1
    assert sent["query"] == "api-version=2024-10-21"
    assert sent["headers"]["api-key"] == "az-key-123" and "authorization" not in sent["headers"]
    assert sent["body"]["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]
    assert sent["body"]["temperature"] == 0.1
    assert completion.choices[0].message.content == REPLY and completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == (len(REPLY) + 3) // 4


def test_entra_id_bearer_token_and_api_version_option(stack):
    stack.chat(model="gpt4o-entra", messages=[{"role": "user", "content": "hi"}])
    sent = stack.sent()
    assert sent["headers"]["authorization"] == "Bearer az-key-123" and "api-key" not in sent["headers"]
    assert sent["query"] == "api-version=2025-01-01-preview"


def test_v1_api_puts_the_model_in_the_body(stack):
    stack.chat(model="gpt4o-v1", messages=[{"role": "user", "content": "hi"}])
    sent = stack.sent()
    assert sent["paths"].get("/openai/v1/chat/completions") == 1 and sent["query"] == ""
    assert sent["body"]["model"] == "gpt4o-v1"


def test_stream_drops_the_prompt_filter_preamble(stack):
    chunks = stack.stream(model="gpt4o-prod", messages=[{"role": "user", "content": "stream"}],
                          stream_options={"include_usage": True})
    assert all(c.choices for c in chunks[:-1]), "no empty-choices chunk before the usage chunk"
    assert streamed_text(chunks) == REPLY and finish_reasons(chunks) == ["stop"]
    assert usage_of(chunks).completion_tokens == (len(REPLY) + 3) // 4


def test_tools_and_images_pass_through(stack):
    completion = stack.chat(model="gpt4o-prod", tools=[WEATHER_TOOL], tool_choice="required", messages=[
        {"role": "user", "content": [{"type": "text", "text": "weather here?"},
                                     {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]}])
    body = stack.sent()["body"]
    assert body["tools"] == [WEATHER_TOOL] and body["tool_choice"] == "required"
    assert body["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and completion.choices[0].finish_reason == "tool_calls"
    follow = stack.chat(model="gpt4o-prod", messages=tool_round_trip(call.id), tools=[WEATHER_TOOL])
    assert stack.sent()["body"]["messages"][3]["tool_call_id"] == call.id
    assert follow.choices[0].finish_reason in ("stop", "tool_calls")
    chunks = stack.stream(model="gpt4o-prod", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "w?"}])
    assert [c["name"] for c in streamed_tool_calls(chunks)] == ["get_weather"]


def test_response_format_is_passed_on(stack):
    fmt = {"type": "json_schema", "json_schema": {"name": "A", "schema": {"type": "object"}}}
    completion = stack.chat(model="gpt4o-prod", messages=[{"role": "user", "content": "json"}], response_format=fmt)
    assert stack.sent()["body"]["response_format"] == fmt
    assert json.loads(completion.choices[0].message.content) == {}, "a value of the schema: any object"


def test_content_filter_error_is_content_policy(stack):
    for stream in (False, True):
        status, error = stack.error(model="gpt4o-filtered", stream=stream, messages=[{"role": "user", "content": "x"}])
        assert (status, error["type"], error["code"]) == CONTENT_POLICY
        assert "content management policy" in error["message"]


def test_filtered_answer_keeps_content_filter_finish_reason(stack):
    completion = stack.chat(model="gpt4o-cut", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize("kind", sorted(ERROR_CASES))
def test_upstream_errors_map_to_openai_errors(stack, kind):
    check_error_kind(stack, "azure", kind)


def test_embeddings_use_the_deployment_url(stack):
    result = stack.client.embeddings.create(model="gpt4o-prod", input="hello")
    assert len(result.data[0].embedding) == 16
    sent = stack.sent()
    assert sent["paths"].get("/openai/deployments/gpt4o-prod/embeddings") == 1
    assert sent["query"] == "api-version=2024-10-21"


def test_mock_requires_api_version_and_key(stack):
    from support import http

    url = stack.mock.url + "/openai/deployments/gpt4o-prod/chat/completions"
    body = {"messages": [{"role": "user", "content": "x"}]}
    assert http("POST", url, body, headers={"api-key": "k"})[0] == 404
    assert http("POST", url + "?api-version=2024-10-21", body)[0] == 401
    assert http("POST", url + "?api-version=2024-10-21", body, headers={"api-key": "k"})[0] == 200
