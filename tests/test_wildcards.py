"""Wildcard models (`openai/*`): any model of a provider by name, priced from the catalog, through the real
gateway with the OpenAI and Anthropic SDKs as clients and the mock upstream behind it."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-test-master-wildcards"
HI = [{"role": "user", "content": "Say hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wildcards")
    mock = MockProc(tmp, {"gpt-4.1-mini": {"reply": "hi from gpt-4.1-mini"},
                          "broken": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
                          "down": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]}})
    up = {"base_url": mock.url + "/v1", "api_key": "${UP_KEY}"}
    config = {"auth": {"master_key": "${SB_MASTER}"}, "models": {
        "openai/*": {"deployments": [{"provider": "openai", **up}]},
        "flaky/*": {"strategy": "ordered", "breaker": {"failures": 1, "cooldown": 60},
                    "pricing": {"input_per_mtok": 0, "output_per_mtok": 0},
                    "deployments": [{"provider": "openai", **up}, {"provider": "openai", **up, "model": "backup-*"}]},
        "local/*": {"deployments": [{"provider": "openai", **up, "model": "org/*"}],
                    "pricing": {"input_per_mtok": 0, "output_per_mtok": 0}},
        "claude/*": {"deployments": [{"provider": "anthropic", "base_url": mock.url, "api_key": "${UP_KEY}"}]},
        "gpt-4o": {"deployments": [{"provider": "openai", **up}]},
        # models named only through the wildcard: a fallback, a router's two models, a per-model limit
        "primary": {"deployments": [{"provider": "openai", **up, "model": "down"}], "retries": {"max_per_model": 1},
                    "fallbacks": ["openai/gpt-4.1-nano"]},
    }, "routers": {"auto": {"strong": "openai/gpt-4.1", "weak": "openai/gpt-4.1-mini", "threshold": 1.0}},
        "accounts": {"model_limits": {"openai/gpt-4o-mini": {"rpm": 1}}}}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "UP_KEY": "sk-up"})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    return openai.OpenAI(api_key=MASTER, base_url=stack[0].url + "/v1", max_retries=0, timeout=15)


def test_a_provider_model_by_name_is_served_and_priced_from_the_catalog(stack, client):
    gw, mock = stack
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4.1-mini", messages=HI)
    answer = raw.parse()
    assert answer.choices[0].message.content == "hi from gpt-4.1-mini"
    assert mock.stats()["last_request"]["model"] == "gpt-4.1-mini"
    usage = answer.usage
    # the catalog's gpt-4.1-mini: $0.40 in, $1.60 out per million tokens
    assert float(raw.headers["x-switchboard-cost"]) == pytest.approx(
        (usage.prompt_tokens * 0.4 + usage.completion_tokens * 1.6) / 1e6, rel=1e-6)
    rid = raw.headers["x-request-id"]
    row = wait_for(lambda: next((r for r in gw.requests_logged() if r["request_id"] == rid), None))
    assert row["model_used"] == "openai/gpt-4.1-mini" and row["deployment"] == "openai/gpt-4.1-mini#0"
    assert row["cost"] == pytest.approx(float(raw.headers["x-switchboard-cost"]), rel=1e-6)


def test_the_rest_of_the_name_fills_the_deployments_star_and_a_wildcard_price_applies(stack, client):
    _, mock = stack
    raw = client.chat.completions.with_raw_response.create(model="local/llama-3.1-8b", messages=HI)
    assert raw.parse().choices[0].message.content
    assert mock.stats()["last_request"]["model"] == "org/llama-3.1-8b"
    assert float(raw.headers["x-switchboard-cost"]) == 0.0


def test_a_wildcard_serves_other_wire_formats_too(stack):
    gw, mock = stack
    client = anthropic.Anthropic(api_key=MASTER, base_url=gw.url, max_retries=0, timeout=15)
    message = client.messages.create(model="claude/claude-haiku-4-5", max_tokens=100, messages=HI)
    assert message.content[0].text and mock.stats()["last_request"]["model"] == "claude-haiku-4-5"
    assert mock.stats()["by_path"].get("/v1/messages")


def test_unpriced_unknown_and_malformed_names_are_clear_errors(stack, client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="openai/a-model-nobody-priced", messages=HI)
    assert info.value.body["code"] == "model_not_priced" and "openai/*" in info.value.body["message"]
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="mistral/mistral-large", messages=HI)
    assert "openai/*" in info.value.body["message"] and "gpt-4o" in info.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="openai/../etc", messages=HI)
    with pytest.raises(openai.NotFoundError):  # a trailing newline is not part of a model id (nor of a header)
        client.chat.completions.create(model="openai/gpt-4o\n", messages=HI)


def test_models_made_by_a_wildcard_are_listed_and_retrievable(stack, client):
    client.chat.completions.create(model="openai/gpt-4.1-mini", messages=HI)
    listed = {m.id for m in client.models.list()}
    assert {"gpt-4o", "openai/gpt-4.1-mini"} <= listed
    model = client.models.retrieve("openai/gpt-4.1-nano")
    assert model.id == "openai/gpt-4.1-nano" and model.owned_by == "openai"
    # looking a model up does not make it (nor use up the gateway's room for made models)
    assert client.models.retrieve("openai/gpt-4-turbo").id == "openai/gpt-4-turbo"
    assert "openai/gpt-4-turbo" not in {m.id for m in client.models.list()}


def test_a_wildcard_model_has_the_wildcards_breaker(stack, client):
    _, mock = stack

    def attempts() -> str:
        raw = client.chat.completions.with_raw_response.create(model="flaky/broken", messages=HI)
        assert raw.parse().choices[0].message.content
        return raw.headers["x-switchboard-attempts"]

    # the first deployment fails and the request fails over to `backup-*`; one failure opens the breaker
    # (`breaker: {failures: 1}` on the wildcard, where the default needs 5), so later requests skip it
    assert attempts() == "2" and mock.stats()["by_model"]["broken"] == 1
    assert [attempts() for _ in range(3)] == ["1", "1", "1"]
    assert mock.stats()["by_model"]["broken"] == 1 and mock.stats()["last_request"]["model"] == "backup-broken"


def test_a_key_may_be_limited_to_a_wildcard(stack):
    gw, _ = stack
    headers = {"authorization": f"Bearer {MASTER}"}
    status, _, raw = http("POST", gw.url + "/admin/keys", {"name": "openai-only", "allowed_models": ["openai/*"]},
                          headers=headers)
    assert status in (200, 201), raw
    key = json.loads(raw)["key"]
    scoped = openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=15)
    assert scoped.chat.completions.create(model="openai/gpt-4.1-mini", messages=HI).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        scoped.chat.completions.create(model="local/llama-3.1-8b", messages=HI)
    # the key sees only what it may use, in the list and by name
    assert {m.id for m in scoped.models.list()} == {"openai/gpt-4.1-mini", "openai/gpt-4.1-nano", "openai/gpt-4.1",
                                                    "openai/gpt-4o-mini"}
    with pytest.raises(openai.NotFoundError):
        scoped.models.retrieve("local/llama-3.1-8b")
    status, _, raw = http("POST", gw.url + "/admin/keys", {"name": "bad", "allowed_models": ["mistral/*"]},
                          headers=headers)
    assert status == 400 and json.loads(raw)["error"]["param"] == "allowed_models"


def test_fallbacks_routers_and_limits_may_name_models_through_a_wildcard(stack, client):
    _, mock = stack
    # `primary` fails upstream and falls back to openai/gpt-4.1-nano, which only the wildcard defines
    raw = client.chat.completions.with_raw_response.create(model="primary", messages=HI)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-switchboard-model"] == "openai/gpt-4.1-nano"
    assert mock.stats()["last_request"]["model"] == "gpt-4.1-nano"
    # a router's strong and weak models may be wildcard names too
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HI)
    assert raw.headers["x-switchboard-routed-to"] == "openai/gpt-4.1-mini"
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HI,
                                                           extra_headers={"x-switchboard-threshold": "0"})
    assert raw.headers["x-switchboard-routed-to"] == "openai/gpt-4.1"
    assert mock.stats()["last_request"]["model"] == "gpt-4.1"
    # and a per-model limit applies to the model made for it: one request a minute
    assert client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI).choices[0].message.content
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
    # they are configured models from the start: listed before any request made them
    assert {"openai/gpt-4.1-nano", "openai/gpt-4.1", "openai/gpt-4o-mini"} <= {m.id for m in client.models.list()}
