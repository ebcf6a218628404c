"""Streamed function calls on the Responses ingress, from an OpenAI-format upstream.

An OpenAI stream may interleave the argument deltas of parallel tool calls;
the Responses stream sends one output item at a time (added, its deltas, its
done events, then the next). The official openai SDK reads the gateway's
stream; the mock upstream sends the OpenAI deltas.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import openai
import pytest
from tool_streams import INTERLEAVED, PARALLEL, PIECES, REPLY, tool_stream_stack

MASTER = "sk-test-master-responses-tool-streams"
TOOLS = [{"type": "function", "name": name, "description": f"{name} for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
         for name in ("get_weather", "get_time")]
QUESTION = "Weather and time, please"
# arguments go as the upstream sends them, JSON or not (none as "{}")
ODD = [{"name": "get_weather", "arguments": '{"city": "Oslo"}'},
       {"name": "get_time", "arguments": "[1, 2]"},
       {"name": "get_time", "arguments": ""},
       {"name": "get_weather", "arguments": "5"},
       {"name": "get_weather", "arguments": "not json"},
       {"name": "get_weather", "arguments": '{"city": "Tromsø"}'}]
ODD_ARGUMENTS = ['{"city": "Oslo"}', "[1, 2]", "{}", "5", "not json", '{"city": "Tromsø"}']
ITEM_EVENTS = {"response.output_item.added", "response.output_item.done"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gw, mock = tool_stream_stack(tmp_path_factory.mktemp("ingress-responses-tools"), MASTER, {
        **INTERLEAVED, "gpt-in-turn": {"tool_calls": PARALLEL, "argument_pieces": PIECES},
        "gpt-odd-arguments": {"tool_calls": ODD, "argument_pieces": PIECES}})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    gw, _ = stack
    return openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=15)


def raw_events(client: openai.OpenAI, model: str) -> list[Any]:
    """The events of a streamed Response, as `client.responses.create(stream=True)` reads them."""
    with client.responses.create(model=model, input=QUESTION, tools=TOOLS, stream=True) as stream:
        return list(stream)


def items_in_sequence(events: list[Any]) -> dict[int, list[Any]]:
    """Each output item's events between its added and done, after checking the Responses order: sequence numbers
    0, 1, 2...; items 0, 1, 2... each added, streamed and done before the next is added; nothing after its done."""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    inside: dict[int, list[Any]] = defaultdict(list)
    open_index, next_index = None, 0
    for event in events[2:-1]:
        if event.type == "response.output_item.added":
            assert open_index is None and event.output_index == next_index, event
            open_index, next_index = event.output_index, next_index + 1
        elif event.type == "response.output_item.done":
            assert event.output_index == open_index, event
            open_index = None
        else:
            assert event.output_index == open_index, event
            inside[event.output_index].append(event)
    assert open_index is None
    return inside


def argument_deltas(item_events: list[Any]) -> list[str]:
    """An item's argument deltas, after checking that they add up to the arguments its done event has."""
    deltas = [e.delta for e in item_events if e.type == "response.function_call_arguments.delta"]
    done = [e for e in item_events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and "".join(deltas) == done[0].arguments
    return deltas


def calls_of(response: Any) -> list[tuple[str, str]]:
    return [(item.name, item.arguments) for item in response.output if item.type == "function_call"]


def as_sent(calls: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(call["name"], call["arguments"]) for call in calls]


def test_interleaved_parallel_calls_come_as_whole_items_in_order(client):
    events = raw_events(client, "interleaved")
    inside = items_in_sequence(events)
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(item.type, item.name, item.arguments) for item in done] == [
        ("function_call", call["name"], call["arguments"]) for call in PARALLEL]
    deltas = [argument_deltas(inside[i]) for i in range(len(PARALLEL))]
    # the open item streams; the calls that came out of turn wait, then go whole
    assert [len(d) for d in deltas] == [PIECES] + [1] * (len(PARALLEL) - 1)
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert {item.arguments for item in added} == {""} and len({item.call_id for item in added}) == len(PARALLEL)

    final = events[-1].response
    assert calls_of(final) == as_sent(PARALLEL) and [item.id for item in final.output] == [item.id for item in done]
    assert calls_of(client.responses.retrieve(final.id)) == as_sent(PARALLEL)


def test_the_stream_helper_builds_the_whole_calls(client):
    with client.responses.stream(model="interleaved", input=QUESTION, tools=TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    items_in_sequence(events)
    assert calls_of(final) == as_sent(PARALLEL) and final.status == "completed"
    assert [json.loads(item.arguments) for item in final.output] == [json.loads(c["arguments"]) for c in PARALLEL]
    assert calls_of(client.responses.retrieve(final.id)) == as_sent(PARALLEL)


def test_text_after_interleaved_calls_is_the_next_item(client):
    with client.responses.stream(model="interleaved-text", input=QUESTION, tools=TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    inside = items_in_sequence(events)
    assert [e.item.type for e in events if e.type == "response.output_item.added"] == (
        ["function_call"] * len(PARALLEL) + ["message"])
    assert "".join(e.delta for e in inside[len(PARALLEL)] if e.type == "response.output_text.delta") == REPLY
    assert calls_of(final) == as_sent(PARALLEL) and final.output_text == REPLY
    stored = client.responses.retrieve(final.id)
    assert calls_of(stored) == as_sent(PARALLEL) and stored.output_text == REPLY


def test_calls_one_after_another_each_stream_as_they_come(client):
    events = raw_events(client, "in-turn")
    inside = items_in_sequence(events)
    assert [len(argument_deltas(inside[i])) for i in range(len(PARALLEL))] == [PIECES] * len(PARALLEL)
    assert calls_of(events[-1].response) == as_sent(PARALLEL)


def test_arguments_are_streamed_as_the_upstream_sends_them(client):
    answer = client.responses.create(model="odd-arguments", input=QUESTION, tools=TOOLS)
    assert [arguments for _, arguments in calls_of(answer)] == ODD_ARGUMENTS

    events = raw_events(client, "odd-arguments")
    inside = items_in_sequence(events)
    deltas = [argument_deltas(inside[i]) for i in range(len(ODD))]
    assert ["".join(d) for d in deltas] == ODD_ARGUMENTS
    # whole objects and arrays stream as they come; the calls after one with no arguments yet (they may still
    # come) wait, then go whole
    assert [len(d) for d in deltas] == [PIECES, PIECES, 1, 1, 1, 1]
    final = events[-1].response
    assert [arguments for _, arguments in calls_of(final)] == ODD_ARGUMENTS
    assert calls_of(client.responses.retrieve(final.id)) == calls_of(final)
