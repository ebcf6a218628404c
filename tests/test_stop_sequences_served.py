"""Stop sequences the gateway applies, as served: on a model that takes none (OpenAI's reasoning models) and
through a cascade, with the official openai and anthropic SDKs against a real gateway and the mock upstream.

- A sequence the gateway applies ends the answer where a model writing left to right would stop: at the first
  sequence complete, so a plain answer and a streamed one agree ("bravo" is complete before "alpha bravo
  charlie" is).
- A cascade's stream replays the accepted answer: its finish keeps the stop_sequence the answer has.
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest
from support import GatewayProc, MockProc, wait_for

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


def test_a_reasoning_models_stream_cut_here_is_charged_its_hidden_reasoning(openai_client, stack):
    """o3 streams no reasoning, and reports it only in the usage at the end of its stream: the gateway reads the
    stream to that end after the cut (sending nothing more) so the charge is o3's own, as for the plain answer."""
    gw, _ = stack

    def logged() -> list[dict]:
        return [row for row in gw.requests_logged() if row["model_requested"] == "reasoning"]

    request = {"model": "reasoning", "messages": [{"role": "user", "content": "Spell the alphabet"}],
               "stop": ["bravo"]}
    time.sleep(0.5)  # the earlier tests' rows are written (the log is flushed every 0.2 s)
    before = len(logged())
    plain = openai_client.chat.completions.create(**request)
    chunks = list(openai_client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (text, plain.choices[0].message.content) == ("alpha ", "alpha ")
    usage = chunks[-1].usage
    assert usage.completion_tokens_details.reasoning_tokens > 0
    assert (usage.prompt_tokens, usage.completion_tokens) == (plain.usage.prompt_tokens, plain.usage.completion_tokens)
    wait_for(lambda: len(logged()) == before + 2)
    assert [row["completion_tokens"] for row in logged()[before:]] == [plain.usage.completion_tokens] * 2
