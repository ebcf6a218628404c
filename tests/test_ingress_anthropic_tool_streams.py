"""Streamed tool calls on the Anthropic ingress, from an OpenAI-format upstream.

An OpenAI stream may interleave the argument deltas of parallel tool calls and
may carry arguments that are not a JSON object; Anthropic's stream sends one
content block at a time (start, its deltas, stop) and a tool_use input is
always an object. The official anthropic SDK reads the gateway's stream; the
mock upstream sends the OpenAI deltas.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import anthropic
import pytest
from tool_streams import INTERLEAVED, PARALLEL, PIECES, REPLY, tool_stream_stack

MASTER = "sk-test-master-tool-streams"
TOOLS = [{"name": name, "description": f"{name} for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
         for name in ("get_weather", "get_time")]
# live object calls first, then arguments that are not an object, then an object call held behind them
ODD = [{"name": "get_weather", "arguments": '{"city": "Oslo"}'},
       {"name": "get_time", "arguments": '{"city": "Bergen"}'},
       {"name": "get_time", "arguments": ""},
       {"name": "get_weather", "arguments": "[1,2]"},
       {"name": "get_weather", "arguments": "5"},
       {"name": "get_weather", "arguments": "not json"},
       {"name": "get_weather", "arguments": '{"city": "Tromsø"}'}]
RAW_EVENTS = {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
              "message_stop"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gw, mock = tool_stream_stack(tmp_path_factory.mktemp("ingress-anthropic-tools"), MASTER, {
        **INTERLEAVED, "gpt-odd-arguments": {"tool_calls": ODD, "argument_pieces": PIECES}})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    gw, _ = stack
    return anthropic.Anthropic(api_key=MASTER, base_url=gw.url, max_retries=0, timeout=15)


def streamed(client: anthropic.Anthropic, model: str) -> tuple[list[Any], Any]:
    """The raw events of a streamed answer, and the final message the SDK built from them."""
    with client.messages.stream(model=model, max_tokens=200, tools=TOOLS,
                                messages=[{"role": "user", "content": "Weather and time, please"}]) as stream:
        events = [event for event in stream if event.type in RAW_EVENTS]
        return events, stream.get_final_message()


def blocks_in_sequence(events: list[Any]) -> dict[int, list[Any]]:
    """Each block's deltas, after checking Anthropic's order: blocks 0, 1, 2... each started, given its deltas and
    stopped before the next starts."""
    deltas: dict[int, list[Any]] = defaultdict(list)
    open_index, next_index = None, 0
    for event in events:
        if event.type == "content_block_start":
            assert open_index is None and event.index == next_index, event
            open_index, next_index = event.index, next_index + 1
        elif event.type == "content_block_delta":
            assert event.index == open_index, event
            deltas[event.index].append(event.delta)
        elif event.type == "content_block_stop":
            assert event.index == open_index, event
            open_index = None
    assert open_index is None and [e.type for e in events[-2:]] == ["message_delta", "message_stop"]
    return deltas


def streamed_input(deltas: list[Any]) -> Any:
    assert {d.type for d in deltas} == {"input_json_delta"}
    return json.loads("".join(d.partial_json for d in deltas))


def test_interleaved_parallel_tool_calls_come_as_whole_blocks_in_order(client):
    events, final = streamed(client, "interleaved")
    deltas = blocks_in_sequence(events)
    starts = [e.content_block for e in events if e.type == "content_block_start"]
    assert [(b.type, b.name) for b in starts] == [("tool_use", c["name"]) for c in PARALLEL]
    expected = [json.loads(c["arguments"]) for c in PARALLEL]
    assert [streamed_input(deltas[i]) for i in range(len(PARALLEL))] == expected
    assert len(deltas[0]) == PIECES  # the open block streams; the calls that came out of turn wait, then go whole
    assert [len(deltas[i]) for i in range(1, len(PARALLEL))] == [1] * (len(PARALLEL) - 1)

    assert final.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in final.content] == [
        ("tool_use", c["name"], value) for c, value in zip(PARALLEL, expected)]
    assert len({b.id for b in final.content}) == len(PARALLEL)


def test_text_after_interleaved_tool_calls_is_the_next_block(client):
    events, final = streamed(client, "interleaved-text")
    deltas = blocks_in_sequence(events)
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["tool_use"] * len(PARALLEL) + ["text"]
    assert "".join(d.text for d in deltas[len(PARALLEL)]) == REPLY
    assert [b.type for b in final.content] == ["tool_use"] * len(PARALLEL) + ["text"]
    assert [b.input for b in final.content[:-1]] == [json.loads(c["arguments"]) for c in PARALLEL]
    assert final.content[-1].text == REPLY and final.stop_reason == "tool_use"


def test_a_streamed_tool_input_is_the_object_the_json_answer_has(client):
    answer = client.messages.create(model="odd-arguments", max_tokens=200, tools=TOOLS,
                                    messages=[{"role": "user", "content": "Weather and time, please"}])
    inputs = [b.input for b in answer.content]
    assert inputs == [{"city": "Oslo"}, {"city": "Bergen"}, {}, {"value": [1, 2]}, {"value": 5},
                      {"arguments": "not json"}, {"city": "Tromsø"}]

    events, final = streamed(client, "odd-arguments")
    deltas = blocks_in_sequence(events)
    assert [streamed_input(deltas[i]) for i in range(len(ODD))] == inputs
    assert [b.input for b in final.content] == inputs and [b.name for b in final.content] == [c["name"] for c in ODD]
    # objects stream as they come; an input known only at the end goes whole, and so do the calls after it
    assert [len(deltas[i]) for i in range(len(ODD))] == [PIECES, PIECES, 1, 1, 1, 1, 1]
