"""What only OpenAI's own API serves (legacy function calling, audio output, web search, predicted outputs) is a
400 naming the parameter on every other provider, never an answer that silently lacks it; an OpenAI-format
upstream gets it as sent. Real gateway, mock upstream, SQLite."""

from __future__ import annotations

import json

import pytest

from provider_helpers import every_provider_stack
from support import http

MASTER = "sk-test-master-openai-only-0123"
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
LEGACY_HISTORY = [*ASK, {"role": "assistant", "content": None,
                         "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                  {"role": "function", "name": "get_weather", "content": '{"temp_c": 21}'}]
CASES = [
    ({"messages": ASK, "functions": [WEATHER]}, "functions"),
    ({"messages": ASK, "function_call": "auto"}, "function_call"),
    ({"messages": LEGACY_HISTORY}, "messages[1].function_call"),
    ({"messages": [*ASK, LEGACY_HISTORY[2]]}, "messages[1].role"),
    ({"messages": ASK, "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"messages": ASK, "modalities": ["text", "audio"]}, "modalities"),
    ({"messages": ASK, "web_search_options": {}}, "web_search_options"),
    ({"messages": ASK, "prediction": {"type": "content", "content": "Sunny."}}, "prediction"),
]


stack = every_provider_stack("openai-only", MASTER)


@pytest.mark.parametrize("model", ["claude", "gemini", "bedrock", "ollama"])
def test_openai_only_features_are_400s_elsewhere(stack, model):
    gw, mock = stack
    before = mock.stats()["requests"]
    for body, param in CASES:
        status, _, raw = http("POST", gw.url + "/v1/chat/completions", {"model": model, **body},
                              {"authorization": f"Bearer {MASTER}"})
        error = json.loads(raw)["error"]
        assert (status, error["param"], error["code"]) == (400, param, "unsupported_parameter"), (body, error)
        assert f"provider '{'anthropic' if model == 'claude' else model}'" in error["message"]
    assert mock.stats()["requests"] == before  # none reached an upstream
    status, _, _ = http("POST", gw.url + "/v1/chat/completions", {"model": model, "messages": ASK, "modalities": [
        "text"]}, {"authorization": f"Bearer {MASTER}"})
    assert status == 200  # text output is what every model gives


def test_an_openai_format_upstream_gets_them_as_sent(stack):
    gw, mock = stack
    status, _, raw = http("POST", gw.url + "/v1/chat/completions", {"model": "gpt", "messages": LEGACY_HISTORY,
                                                                    "functions": [WEATHER]},
                          {"authorization": f"Bearer {MASTER}"})
    assert status == 200, raw
    sent = mock.stats()["last_request"]
    assert sent["functions"] == [WEATHER] and sent["messages"][2]["role"] == "function"
