"""Stop sequences the gateway applies, as served: on a model that takes none (OpenAI's reasoning models) and
through a cascade, with the official openai and anthropic SDKs against a real gateway and the mock upstream.

- A sequence the gateway applies ends the answer where a model writing left to right would stop: at the first
  sequence complete, so a plain answer and a streamed one agree ("bravo" is complete before "alpha bravo
  charlie" is).
- A cascade's stream replays the accepted answer: its finish keeps the stop_sequence the answer has.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from support import GatewayProc, MockProc

MASTER = "sk-test-master-stops-served"
REPLY = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"  # streamed a word at a time
NEVER = ["zulu", "yankee", "xray", "whiskey", "victor"]  # sequences the reply never holds


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stops-served")
    mock = MockProc(tmp, {
        "o3": {"reply": REPLY}, "weak-up": {"reply": REPLY}, "strong-up": {"reply": REPLY},
    })

    def model(upstream: str) -> dict[str, Any]:
        return {"deployments": [{"provider": "openai", "model": upstream, "base_url": mock.url + "/v1",
                                 "api_key": "${UP_KEY}"}]}

    config = {"auth": {"master_key": "${SB_MASTER}"},
              "models": {"reasoning": model("o3"), "weak": model("weak-up"), "strong": model("strong-up")},
              "routers": {"auto-regex": {"strong": "strong", "weak": "weak", "threshold": 1.0,
                                         "cascade": {"check": "regex", "pattern": "^alpha"}}}}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "UP_KEY": "up-key"})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def openai_client(stack):
    return openai.OpenAI(api_key=MASTER, base_url=stack[0].url + "/v1", max_retries=0, timeout=15)


@pytest.fixture
def claude_client(stack):
    return anthropic.Anthropic(api_key=MASTER, base_url=stack[0].url, max_retries=0, timeout=15)


def chat(client: openai.OpenAI, stops: list[str], stream: bool) -> tuple[str, str, str | None]:
    """(text, finish_reason, stop_sequence) of a chat request to the reasoning model (the gateway applies every
    sequence: it takes none)."""
    request = {"model": "reasoning", "messages": [{"role": "user", "content": "Spell the alphabet"}], "stop": stops}
    if not stream:
        choice = client.chat.completions.create(**request).choices[0]
        return choice.message.content, choice.finish_reason, (choice.model_extra or {}).get("stop_sequence")
    text, finish, sequence = "", None, None
    for chunk in client.chat.completions.create(**request, stream=True):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.finish_reason:
                finish, sequence = choice.finish_reason, (choice.model_extra or {}).get("stop_sequence")
    return text, finish, sequence


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("stops, expected", [
    (["alpha bravo charlie", "bravo"], ("alpha ", "stop", "bravo")),  # "bravo" is complete first
    (["kilo lima", "kilo"], ("alpha bravo charlie delta echo foxtrot golf hotel india juliet ", "stop", "kilo")),
    (["lima", "o lima"], ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kil", "stop", "o lima")),
])
def test_a_local_sequence_ends_the_answer_where_the_first_is_complete(openai_client, stops, expected, stream):
    assert chat(openai_client, stops, stream) == expected


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_cascades_stream_keeps_the_stop_sequence(claude_client, stream):
    request = {"model": "auto-regex", "max_tokens": 200, "stop_sequences": [*NEVER, " golf"],
               "messages": [{"role": "user", "content": "Spell the alphabet"}]}
    if stream:
        with claude_client.messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = claude_client.messages.create(**request)
    assert message.content[0].text == "alpha bravo charlie delta echo foxtrot"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " golf")
