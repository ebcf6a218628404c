"""Stop sequences whatever a provider's own limit: each upstream gets as many as it takes (OpenAI 4, Gemini 5;
Claude documents no limit; OpenAI's reasoning models take none, see test_provider_openai_reasoning.py) and the
gateway applies the rest, so the client sees the answer cut at the earliest of all its sequences. The official
anthropic and openai SDKs are the clients of a real gateway; the mock upstream enforces each provider's limit
(more is its 400), so an upstream sent too many would fail the request.
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest
from support import GatewayProc, MockProc, http

MASTER = "sk-test-master-stops"
REPLY = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"  # streamed a word at a time
NEVER = ["zulu", "yankee", "xray", "whiskey", "victor"]  # sequences the reply never holds
SLOW_REPLY = " ".join(f"word{i}" for i in range(40))
# the gateway's model -> how many stop sequences its upstream takes (None: all of them); `strict` is an
# OpenAI-compatible server whose deployment says it takes 1 (max_stop_sequences)
TAKES = {"via-openai": 4, "via-gemini": 5, "via-claude": None, "strict": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stop-sequences")
    mock = MockProc(tmp, {
        "gpt-4o-mini": {"reply": REPLY}, "gemini-2.5-flash": {"reply": REPLY}, "claude-sonnet-4-5": {"reply": REPLY},
        "gpt-4o-slow": {"reply": SLOW_REPLY, "tokens_per_second": 20},
        "local-vllm": {"reply": REPLY, "stop_limit": None},
    })

    def model(provider: str, upstream: str, **options: Any) -> dict[str, Any]:
        base_url = mock.url + ("/v1" if provider == "openai" else "")
        return {"deployments": [{"provider": provider, "model": upstream, "base_url": base_url,
                                 "api_key": "${UP_KEY}", **options}]}

    config = {"auth": {"master_key": "${SB_MASTER}"}, "models": {
        "via-openai": model("openai", "gpt-4o-mini"),
        "via-gemini": model("gemini", "gemini-2.5-flash"),
        "via-claude": model("anthropic", "claude-sonnet-4-5"),
        "slow": model("openai", "gpt-4o-slow"),
        "strict": model("openai", "gpt-4o-mini", max_stop_sequences=1),
        "vllm": model("openai", "local-vllm", max_stop_sequences=16),
    }}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "UP_KEY": "up-key"})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def claude_client(stack):
    return anthropic.Anthropic(api_key=MASTER, base_url=stack[0].url, max_retries=0, timeout=15)


@pytest.fixture
def openai_client(stack):
    return openai.OpenAI(api_key=MASTER, base_url=stack[0].url + "/v1", max_retries=0, timeout=15)


def upstream_stops(mock: MockProc) -> list[str] | None:
    """The stop sequences the last upstream request carried, in its own wire format."""
    body = mock.stats()["last_request"]
    if "generationConfig" in body:
        return body["generationConfig"].get("stopSequences")
    return body.get("stop_sequences", body.get("stop"))


def ask(client: anthropic.Anthropic, model: str, stops: list[str], stream: bool) -> tuple[str, str, str | None]:
    """(text, stop_reason, stop_sequence) of a Messages request, plain or through the SDK's stream helper."""
    request = {"model": model, "max_tokens": 200, "stop_sequences": stops,
               "messages": [{"role": "user", "content": "Spell the alphabet"}]}
    if not stream:
        message = client.messages.create(**request)
    else:
        with client.messages.stream(**request) as events:
            message = events.get_final_message()
    text = "".join(block.text for block in message.content if block.type == "text")
    return text, message.stop_reason, message.stop_sequence


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", list(TAKES))
def test_a_sequence_beyond_the_upstreams_limit_stops_the_answer(claude_client, stack, model, stream):
    _, mock = stack
    stops = [*NEVER, "a ech", " golf"]  # "a ech" spans two stream pieces ("delta", " echo")
    text, reason, sequence = ask(claude_client, model, stops, stream)
    assert (text, reason, sequence) == ("alpha bravo charlie delt", "stop_sequence", "a ech")
    assert upstream_stops(mock) == stops[:TAKES[model]]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["via-openai", "via-gemini"])
def test_a_local_sequence_met_before_the_upstreams_own_wins(claude_client, stack, model, stream):
    _, mock = stack
    stops = ["golf", *NEVER[:4], "charlie"]  # the upstream stops at "golf"; "charlie", applied here, comes first
    assert ask(claude_client, model, stops, stream) == ("alpha bravo ", "stop_sequence", "charlie")
    assert "golf" in upstream_stops(mock) and "charlie" not in upstream_stops(mock)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["via-openai", "via-gemini"])
def test_the_upstreams_own_sequence_met_first_wins(claude_client, stack, model, stream):
    _, mock = stack
    stops = ["charlie", *NEVER[:4], "golf"]  # the upstream stops at "charlie", before "golf" is written
    # OpenAI-format and Gemini answers do not say which sequence stopped them (docs/providers.md)
    assert ask(claude_client, model, stops, stream) == ("alpha bravo ", "end_turn", None)
    assert "charlie" in upstream_stops(mock) and "golf" not in upstream_stops(mock)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_deployment_that_takes_more_sequences_gets_that_many(claude_client, stack, stream):
    _, mock = stack
    stops = [*(f"never{i}" for i in range(15)), " golf", "a ech"]  # the server takes 16: the 17th is applied here
    assert ask(claude_client, "vllm", stops, stream) == ("alpha bravo charlie delt", "stop_sequence", "a ech")
    assert upstream_stops(mock) == stops[:16]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_claude_stops_at_the_first_sequence_to_be_complete(claude_client, stream):
    # "bravo" is complete before "alpha bravo charlie", which begins first (the mock model writes left to right)
    stops = ["alpha bravo charlie", *NEVER[:3], "bravo"]
    assert ask(claude_client, "via-claude", stops, stream) == ("alpha ", "stop_sequence", "bravo")


def test_a_json_answer_is_never_cut_by_a_local_sequence(claude_client):
    schema = {"type": "object", "properties": {"word": {"const": "alpha"}}, "required": ["word"]}
    message = claude_client.messages.create(
        model="via-openai", max_tokens=100, stop_sequences=[*NEVER[:4], "{", "alpha"],
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "One word"}])
    assert message.content[0].text == '{"word":"alpha"}' and message.stop_reason == "end_turn"


def test_a_stream_cut_here_closes_the_upstream(claude_client, stack):
    _, mock = stack
    before = mock.stats()["completed"]
    started = time.monotonic()
    text, reason, sequence = ask(claude_client, "slow", [*NEVER, " word3 "], stream=True)
    assert (text, reason, sequence) == ("word0 word1 word2", "stop_sequence", " word3 ")
    assert time.monotonic() - started < 1.5  # the whole reply takes 2 s to stream
    time.sleep(2.5)  # long enough for the upstream to have finished, had it been left running
    assert mock.stats()["completed"] == before  # it never wrote (nor billed) the rest


def test_the_anthropic_ingress_takes_64_stop_sequences_and_the_openai_one_4(claude_client, openai_client):
    many = [f"never{i}" for i in range(64)]
    assert ask(claude_client, "via-openai", many, False) == (REPLY, "end_turn", None)
    with pytest.raises(anthropic.BadRequestError, match="at most 64 stop sequences"):
        ask(claude_client, "via-openai", [*many, "one more"], False)
    with pytest.raises(openai.BadRequestError, match="at most 4 sequences"):
        openai_client.chat.completions.create(model="via-openai", messages=[{"role": "user", "content": "hi"}],
                                              stop=NEVER)


@pytest.mark.parametrize("path, body, message", [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                              "stop": NEVER}, "array too long"),
    ("/v1/chat/completions", {"model": "o3-mini", "messages": [{"role": "user", "content": "hi"}],
                              "stop": ["x"]}, "'stop' is not supported with this model"),
    ("/v1beta/models/gemini-2.5-flash:generateContent", {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"stopSequences": [*NEVER, "one more"]}}, "at most 5 stop sequences"),
])
def test_the_mock_upstream_refuses_more_than_its_provider_takes(stack, path, body, message):
    _, mock = stack
    status, _, raw = http("POST", mock.url + path, body, {"x-goog-api-key": "k", "authorization": "Bearer k"})
    assert status == 400 and message in raw.decode()


def test_a_stop_sequence_over_256_characters_is_refused_on_every_ingress(claude_client, openai_client):
    longest = "z" * 256
    assert ask(claude_client, "via-openai", [*NEVER, longest], False) == (REPLY, "end_turn", None)
    with pytest.raises(anthropic.BadRequestError, match="at most 256 characters") as refused:
        ask(claude_client, "via-openai", [*NEVER, longest + "z"], False)
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    for stop in (longest + "z", ["x", longest + "z"]):
        with pytest.raises(openai.BadRequestError, match="at most 256 characters") as refused:
            openai_client.chat.completions.create(model="via-openai", messages=[{"role": "user", "content": "hi"}],
                                                  stop=stop)
        assert refused.value.body["param"] == "stop"
