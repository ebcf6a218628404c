"""Shared pieces of the provider adapter tests: a gateway in front of the mock upstream, and checks on what comes back."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from support import GatewayProc, MockProc, http
from switchboard.testing.mock_anthropic import PNG
from switchboard.testing.mock_bedrock import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY

MASTER = "sk-test-master-providers-0123"
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
PNG_B64 = base64.b64encode(PNG).decode()

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"], "additionalProperties": False}}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}

# (mock behaviour, OpenAI status, OpenAI error type, code) for each upstream failure kind
ERROR_CASES = {
    "rate_limit": ({"faults": [{"kind": "status", "status": 429, "retry_after": 3}]},
                   429, "rate_limit_error", "rate_limit_exceeded"),
    "auth": ({"faults": [{"kind": "status", "status": 401}]}, 502, "upstream_error", "upstream_authentication_failed"),
    "context_length": ({"context_window": 5}, 400, "invalid_request_error", "context_length_exceeded"),
    "overloaded": ({"faults": [{"kind": "status", "status": 503}]}, 503, "service_unavailable", "upstream_overloaded"),
}
CONTENT_POLICY = (400, "invalid_request_error", "content_policy_violation")


def error_upstreams(prefix: str) -> dict[str, dict[str, Any]]:
    """One upstream model per error kind and per mode (a failing deployment cools down, so none is reused)."""
    out = {}
    for kind, (behaviour, *_) in ERROR_CASES.items():
        out[f"{prefix}-{kind}"] = behaviour
        out[f"{prefix}-{kind}-stream"] = behaviour
    return out


def check_error_kind(stack: Stack, prefix: str, kind: str) -> None:
    """The upstream failure of `kind` reaches the client as the documented OpenAI error, streamed or not."""
    _, status, type_, code = ERROR_CASES[kind]
    messages = [{"role": "user", "content": "a prompt long enough to overflow any small window"}]
    got, error = stack.error(model=f"{prefix}-{kind}", messages=messages)
    assert (got, error["type"], error["code"]) == (status, type_, code), error
    got, error = stack.error(model=f"{prefix}-{kind}-stream", messages=messages, stream=True)
    assert (got, error["type"], error["code"]) == (status, type_, code), error


def every_provider_stack(name: str, master: str) -> Any:
    """A module-scoped `stack` fixture: `every_provider` for the tests of one module, stopped after them."""
    @pytest.fixture(scope="module")
    def stack(tmp_path_factory):
        gw, mock = every_provider(tmp_path_factory.mktemp(name), master)
        yield gw, mock
        gw.stop()
        mock.stop()

    return stack


def every_provider(tmp, master: str) -> tuple[GatewayProc, MockProc]:
    """One mock upstream and a gateway with a model on it through each provider kind: gpt (OpenAI format),
    claude (Anthropic), gemini, bedrock (Converse, SigV4) and ollama (native)."""
    mock = MockProc(tmp, {})

    def model(provider: str, upstream: str, **deployment: Any) -> dict[str, Any]:
        base_url = mock.url + ("/v1" if provider == "openai" else "")
        return {"deployments": [{"provider": provider, "model": upstream, "base_url": base_url, **deployment}],
                "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}

    config = {"auth": {"master_key": "${SB_MASTER}"}, "models": {
        "gpt": model("openai", "gpt-4o-mini"),
        "claude": model("anthropic", "claude-sonnet-4-5", api_key="${UP_KEY}"),
        "gemini": model("gemini", "gemini-2.5-flash", api_key="${UP_KEY}"),
        "bedrock": model("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", region="us-east-1",
                         aws_access_key_id="${AWS_KEY_ID}", aws_secret_access_key="${AWS_SECRET}"),
        "ollama": model("ollama", "llama3.2")}}
    try:
        gw = GatewayProc(tmp, config, env={"SB_MASTER": master, "UP_KEY": "up-key",
                                           "AWS_KEY_ID": MOCK_ACCESS_KEY_ID, "AWS_SECRET": MOCK_SECRET_ACCESS_KEY})
    except Exception:
        mock.stop()
        raise
    return gw, mock


class Stack:
    """A mock upstream and a gateway whose models all point at it through one provider kind."""

    def __init__(self, tmp, provider: str, upstreams: dict[str, dict[str, Any]], deployment: dict[str, Any],
                 base_path: str = "", env: dict[str, str] | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None) -> None:
        self.mock = MockProc(tmp, upstreams)
        models = {}
        for name in upstreams:
            # an override's strings may name the mock's address as {mock}
            override = {k: v.format(mock=self.mock.url) if isinstance(v, str) else v
                        for k, v in (overrides or {}).get(name, {}).items()}
            models[name] = {"deployments": [{"provider": provider, "model": name,
                                             "base_url": self.mock.url + base_path, **deployment, **override}],
                            "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
        config = {"auth": {"master_key": "${SB_MASTER}"}, "models": models}
        try:
            self.gateway = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, **(env or {})}, name=f"gw-{provider}")
        except Exception:
            self.mock.stop()  # a gateway that failed to start must not leave its mock running
            raise
        self.client = openai.OpenAI(api_key=MASTER, base_url=self.gateway.url + "/v1", max_retries=0, timeout=15)

    def stop(self) -> None:
        self.gateway.stop()
        self.mock.stop()

    def sent(self) -> dict[str, Any]:
        """What the gateway last sent upstream: body, headers, query."""
        stats = self.mock.stats()
        return {"body": stats["last_request"], "headers": stats["last_headers"], "query": stats["last_query"],
                "paths": stats["by_path"]}

    def chat(self, **body: Any) -> ChatCompletion:
        """A non-streamed chat through the SDK, validated strictly from the raw body."""
        raw = self.client.chat.completions.with_raw_response.create(**body)
        return ChatCompletion.model_validate(json.loads(raw.content))

    def stream(self, **body: Any) -> list[ChatCompletionChunk]:
        """A streamed chat over raw HTTP: every SSE event validated as a ChatCompletionChunk, ending in [DONE]."""
        status, headers, raw = http("POST", self.gateway.url + "/v1/chat/completions", {**body, "stream": True},
                                    headers={"authorization": f"Bearer {MASTER}"}, timeout=15)
        assert status == 200, raw
        events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]", events[-3:]
        chunks = []
        for data in events[:-1]:
            parsed = json.loads(data)
            assert "error" not in parsed, parsed
            chunks.append(ChatCompletionChunk.model_validate(parsed))
        return chunks

    def error(self, **body: Any) -> tuple[int, dict[str, Any]]:
        status, _, raw = http("POST", self.gateway.url + "/v1/chat/completions", body,
                              headers={"authorization": f"Bearer {MASTER}"}, timeout=15)
        return status, json.loads(raw)["error"]


def streamed_text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def streamed_tool_calls(chunks: list[ChatCompletionChunk]) -> list[dict[str, str]]:
    """Tool calls reassembled from deltas the way the SDK's accumulators do it: by index."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] = delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    return [calls[i] for i in sorted(calls)]


def finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def usage_of(chunks: list[ChatCompletionChunk]):
    found = [c.usage for c in chunks if c.usage is not None]
    assert len(found) == 1, f"expected one usage chunk, got {len(found)}"
    assert chunks[-1].usage is not None and chunks[-1].choices == [], "usage comes last, in a chunk without choices"
    return found[0]


def tool_round_trip(call_id: str) -> list[dict[str, Any]]:
    """A conversation that already called get_weather and holds its result, for the follow-up turn."""
    return [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"temp_c": 21, "sky": "clear"})},
    ]
