"""The Responses-format ingress: the official openai SDK's `client.responses` as a client of /v1/responses.

Scenarios run against a model served by an OpenAI-format upstream and one
served by an Anthropic-format upstream; answers validate against the SDK's
own types, and the SDK's stream helper works end to end.
"""

from __future__ import annotations

import base64
import json

import openai
import pytest
from openai.types.responses import Response
from provider_helpers import PNG_DATA_URL
from support import GatewayProc, MockProc, http

from switchboard.testing.pdf import build_pdf

MASTER = "sk-test-master-responses"
REPLY = "Greetings from the mock upstream, nice to see you."
MODELS = ["via-openai", "via-anthropic"]
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ingress-responses")
    mock = MockProc(tmp, {
        "gpt-up": {"reply": REPLY}, "claude-up": {"reply": REPLY},
        "gpt-cut": {"reply": "one two three four five six", "faults": [{"kind": "cut", "after_chunks": 3}]},
        "gpt-ends": {"reply": "one two three four five six", "faults": [{"kind": "end", "after_chunks": 3}]},
        "gpt-long": {"reply": "a rather long answer " * 20},
        "gpt-same-id": {"reply": REPLY, "completion_id": "chatcmpl-7"},
    })
    openai_dep = {"provider": "openai", "base_url": mock.url + "/v1", "api_key": "${OPENAI_UP_KEY}"}
    anthropic_dep = {"provider": "anthropic", "base_url": mock.url, "api_key": "${ANTHROPIC_UP_KEY}"}
    config = {"auth": {"master_key": "${SB_MASTER}"}, "models": {
        "via-openai": {"deployments": [{**openai_dep, "model": "gpt-up"}]},
        "via-anthropic": {"deployments": [{**anthropic_dep, "model": "claude-up"}]},
        "cut": {"deployments": [{**openai_dep, "model": "gpt-cut"}]},
        "ends": {"deployments": [{**openai_dep, "model": "gpt-ends"}]},
        "long": {"deployments": [{**openai_dep, "model": "gpt-long"}]},
        "same-id": {"deployments": [{**openai_dep, "model": "gpt-same-id"}]},
    }}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER, "OPENAI_UP_KEY": "sk-openai-up",
                                         "ANTHROPIC_UP_KEY": "sk-ant-up"})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture
def client(stack):
    gw, _ = stack
    return openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=15)


def upstream(mock) -> dict:
    return mock.stats()["last_request"]


@pytest.mark.parametrize("model", MODELS)
def test_plain_response_validates_against_sdk_types(client, stack, model):
    _, mock = stack
    raw = client.responses.with_raw_response.create(
        model=model, instructions="Be brief.", temperature=0.5, max_output_tokens=200, metadata={"team": "web"},
        input=[{"role": "user", "content": "Hello"},
               {"role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]},
               {"role": "user", "content": [{"type": "input_text", "text": "Say something."}]}])
    response = Response.model_validate(json.loads(raw.http_response.content))
    assert response.object == "response" and response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == REPLY and response.model
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert response.usage.output_tokens == (len(REPLY) + 3) // 4 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.instructions == "Be brief." and response.metadata == {"team": "web"}
    assert response.store is True and response.previous_response_id is None
    assert raw.headers["x-request-id"]

    body = upstream(mock)
    if model == "via-openai":
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                                    {"role": "assistant", "content": "Hi."},
                                    {"role": "user", "content": [{"type": "text", "text": "Say something."}]}]
        assert body["temperature"] == 0.5 and body["max_tokens"] == 200
    else:
        assert body["system"] == [{"type": "text", "text": "Be brief."}] and body["max_tokens"] == 200
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("model", MODELS)
def test_stream_helper_accumulates_the_events(client, model):
    with client.responses.stream(model=model, input="Stream it") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == REPLY and final.status == "completed" and final.usage.output_tokens > 0
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
                 "response.content_part.done", "response.output_item.done"):
        assert kinds.count(kind) == 1, kinds
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    assert_items_stream_one_after_another(events)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1


@pytest.mark.parametrize("model", MODELS)
def test_function_call_round_trip(client, stack, model):
    _, mock = stack
    question = {"role": "user", "content": "Weather in Paris?"}
    first = client.responses.create(model=model, input=[question], tools=[WEATHER],
                                    tool_choice={"type": "function", "name": "get_weather"})
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id and calls[0].status == "completed"
    json.loads(calls[0].arguments)
    if model == "via-openai":
        sent = upstream(mock)
        assert sent["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "description": WEATHER["description"], "parameters": WEATHER["parameters"]}}]
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

    # The previous output items go back as they are, followed by the function's result.
    # (tool_choice "none": the mock upstream calls a tool whenever it may.)
    follow_up = client.responses.create(model=model, tools=[WEATHER], tool_choice="none", input=[
        question, *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temp_c": 21}'}])
    assert follow_up.output_text == REPLY, follow_up.output
    sent = upstream(mock)
    if model == "via-openai":
        assert sent["messages"][1]["tool_calls"][0]["id"] == calls[0].call_id
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": '{"temp_c": 21}'}
    else:
        assert sent["messages"][1]["content"][-1]["type"] == "tool_use"
        assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": calls[0].call_id,
                                                     "content": [{"type": "text", "text": '{"temp_c": 21}'}]}
    # a function's output may hold an image: it follows the tool message in a user turn, never dropped
    png = PNG_DATA_URL
    client.responses.create(model=model, tools=[WEATHER], tool_choice="none", input=[
        question, *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id,
         "output": [{"type": "input_text", "text": "the radar"}, {"type": "input_image", "image_url": png}]}])
    sent = upstream(mock)
    if model == "via-openai":
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "the radar"}
        assert sent["messages"][3] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png}}]}
    else:
        assert [b["type"] for b in sent["messages"][2]["content"]] == ["tool_result", "image"]
    # and so may a file
    pdf = "data:application/pdf;base64," + base64.b64encode(build_pdf(["the forecast"])).decode()
    client.responses.create(model=model, tools=[WEATHER], tool_choice="none", input=[
        question, *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id,
         "output": [{"type": "input_text", "text": "the forecast"},
                    {"type": "input_file", "filename": "forecast.pdf", "file_data": pdf}]}])
    sent = upstream(mock)
    if model == "via-openai":
        assert sent["messages"][3] == {"role": "user", "content": [
            {"type": "file", "file": {"file_data": pdf, "filename": "forecast.pdf"}}]}
    else:
        assert [b["type"] for b in sent["messages"][2]["content"]] == ["tool_result", "document"]
        assert sent["messages"][2]["content"][1]["source"]["data"] == pdf.split(",", 1)[1]


def test_claude_reasoning_round_trips_as_reasoning_items(client, stack):
    from switchboard.testing.mock_anthropic import signature_of

    _, mock = stack
    question = {"role": "user", "content": "Weather in Paris?"}
    first = client.responses.create(model="via-anthropic", input=[question], tools=[WEATHER],
                                    reasoning={"effort": "low"})
    assert upstream(mock)["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    reasoning, call = first.output[0], first.output[1]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content and call.type == "function_call"
    thought = reasoning.summary[0].text
    assert thought

    # Stateless: the output items sent back as they are carry Claude's signed block home.
    result = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}
    follow_up = client.responses.create(model="via-anthropic", tools=[WEATHER], tool_choice="none",
                                        reasoning={"effort": "low"},
                                        input=[question, *[i.model_dump(exclude_none=True) for i in first.output],
                                               result])
    assert upstream(mock)["messages"][1]["content"][0] == {"type": "thinking", "thinking": thought,
                                                           "signature": signature_of(thought)}
    assert follow_up.output_text == REPLY
    # Stateful: previous_response_id holds it too.
    chained = client.responses.create(model="via-anthropic", tools=[WEATHER], tool_choice="none",
                                      reasoning={"effort": "low"}, previous_response_id=first.id, input=[result])
    assert upstream(mock)["messages"][1]["content"][0]["signature"] == signature_of(thought)
    assert chained.output_text == REPLY

    # Streamed: summary deltas, then the whole item with its sealed blocks.
    with client.responses.stream(model="via-anthropic", input="Think first.", reasoning={"effort": "low"}) as s:
        events = list(s)
        final = s.get_final_response()
    streamed = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == streamed and streamed
    assert final.output[0].encrypted_content and final.output_text == REPLY


def assert_items_stream_one_after_another(events: list) -> None:
    """Each output item is added, streamed and done before the next one is added, as OpenAI streams them."""
    lifecycle = [(e.type, e.output_index) for e in events if e.type.startswith("response.output_item.")]
    count = len(lifecycle) // 2
    assert lifecycle == [(f"response.output_item.{step}", i) for i in range(count) for step in ("added", "done")]
    at = {(kind, i): n for n, (kind, i) in enumerate((e.type, getattr(e, "output_index", None)) for e in events)}
    for n, e in enumerate(events):
        if getattr(e, "output_index", None) is not None and "output_item" not in e.type:
            assert at[("response.output_item.added", e.output_index)] < n < at[("response.output_item.done",
                                                                                  e.output_index)], e.type


def test_claude_thinking_then_a_tool_call_stream_as_two_items_in_turn(client, stack):
    _, mock = stack
    question = {"role": "user", "content": "Weather in Paris?"}
    with client.responses.stream(model="via-anthropic", input=[question], tools=[WEATHER],
                                 reasoning={"effort": "low"}) as s:
        events = list(s)
        final = s.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "function_call"]
    assert_items_stream_one_after_another(events)
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert done[0].encrypted_content == final.output[0].encrypted_content and done[0].encrypted_content
    # the streamed items, sent back, carry the signed thinking home
    result = {"type": "function_call_output", "call_id": final.output[1].call_id, "output": '{"temp_c": 21}'}
    client.responses.create(model="via-anthropic", tools=[WEATHER], reasoning={"effort": "low"},
                            input=[question, *[i.model_dump(exclude_none=True) for i in final.output], result])
    assert upstream(mock)["messages"][1]["content"][0]["type"] == "thinking"
    assert [b["type"] for b in upstream(mock)["messages"][1]["content"]] == ["thinking", "tool_use"]


def test_streamed_function_call(client):
    with client.responses.stream(model="via-openai", input="Weather?", tools=[WEATHER], tool_choice="required") as s:
        events = list(s)
        final = s.get_final_response()
    call = final.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert deltas == call.arguments == done[0].arguments and json.loads(call.arguments)


def test_structured_output_and_token_limit(client, stack):
    _, mock = stack
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    answer_format = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    client.responses.create(model="via-openai", input="Answer in JSON", text={"format": answer_format})
    assert upstream(mock)["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": schema, "strict": True}}
    short = client.responses.create(model="long", input="Say a lot", max_output_tokens=16)
    assert upstream(mock)["max_tokens"] == 16
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"
    assert short.output[0].status == "incomplete" and short.output_text
    # Streamed, the last event is response.incomplete (as OpenAI sends it), not response.completed.
    events = list(client.responses.create(model="long", input="Say a lot", max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    stored = client.responses.retrieve(events[-1].response.id)
    assert stored.status == "incomplete" and stored.incomplete_details.reason == "max_output_tokens"
    assert stored.output_text == events[-1].response.output_text
    assert client.responses.create(model="via-openai", input="Go on", previous_response_id=stored.id).output_text


def test_stream_cut_mid_way_ends_with_error_and_failed_events(client):
    stream = client.responses.create(model="cut", input="Count", stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"], kinds
    assert events[-1].response.status == "failed" and events[-1].response.error.message
    from openai.types.responses import ResponseFailedEvent

    ResponseFailedEvent.model_validate(events[-1].model_dump())  # its error.code is one of OpenAI's values
    assert events[-1].response.error.code == "server_error"


@pytest.mark.parametrize("model", ["cut", "ends"])  # the connection drops; the body ends before the stream's end
def test_a_stream_that_breaks_off_is_stored_as_failed_with_its_output_so_far(client, model):
    with client.responses.stream(model=model, input="Count") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match="response.completed"):  # the SDK helper has no final Response
            stream.get_final_response()
    failed = events[-1].response
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].type == "response.failed" and failed.status == "failed" and streamed
    assert failed.output[0].status == "incomplete" and failed.output_text == streamed

    stored = client.responses.retrieve(failed.id)
    assert stored.status == "failed" and stored.error.code == "server_error" and stored.incomplete_details is None
    assert stored.error.message == failed.error.message and "broke off" in stored.error.message
    assert [i.model_dump() for i in stored.output] == [i.model_dump() for i in failed.output]
    assert stored.output_text == streamed and stored.completed_at is None
    items = client.responses.input_items.list(failed.id).data
    assert [(i.type, i.role, i.content[0].text) for i in items] == [("message", "user", "Count")]


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_response_cannot_be_continued(client, stream):
    failed = list(client.responses.create(model="cut", input="Count", stream=True))[-1].response
    assert failed.status == "failed"
    with pytest.raises(openai.BadRequestError, match="failed and cannot be continued") as info:
        client.responses.create(model="via-openai", input="Go on", previous_response_id=failed.id, stream=stream)
    assert info.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError, match="failed and cannot be continued"):
        client.responses.input_tokens.count(model="via-openai", input="Go on", previous_response_id=failed.id)


def sse_events(body: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in body.decode().split("\n") if line.startswith("data: ")]


def test_a_failed_stream_frees_its_idempotency_key_and_each_attempt_keeps_its_own_response(client, stack):
    gw, mock = stack
    headers = {"authorization": f"Bearer {MASTER}", "idempotency-key": "resp-idem-broken"}
    body = {"model": "ends", "input": "Count", "stream": True}
    _, _, raw = http("POST", gw.url + "/v1/responses", body, headers=headers)
    failed = sse_events(raw)[-1]["response"]
    assert failed["status"] == "failed"
    mock.set_behaviour({"gpt-ends": {"reply": "one two three four five six"}})
    try:  # the retry right after the failure runs again (not refused as still in progress, not replayed)
        status, sent, raw = http("POST", gw.url + "/v1/responses", body, headers=headers)
    finally:
        mock.set_behaviour({"gpt-ends": {"reply": "one two three four five six",
                                         "faults": [{"kind": "end", "after_chunks": 3}]}})
    completed = sse_events(raw)[-1]["response"]
    assert status == 200 and "idempotent-replayed" not in sent and completed["status"] == "completed"
    assert completed["id"] != failed["id"]
    _, sent, raw = http("POST", gw.url + "/v1/responses", body, headers=headers)  # from now on, the answer
    assert sent["idempotent-replayed"] == "true" and sse_events(raw)[-1]["response"]["id"] == completed["id"]
    assert client.responses.retrieve(failed["id"]).status == "failed"
    assert client.responses.retrieve(completed["id"]).output_text == "one two three four five six"


@pytest.mark.parametrize("body,param,fragment", [
    ({"input": "hi", "conversation": "conv_123"}, "conversation", "does not keep Conversation objects"),
    ({"input": "hi", "store": "yes"}, "store", "expected a boolean"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type", "built-in tool 'web_search'"),
    ({"input": "hi", "temprature": 1}, "temprature", "Unknown parameter"),
    ({}, "input", "Missing required parameter: 'input'"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "'item_reference' are not supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[0].image_url", "file ids are not available"),
    ({"input": "hi", "text": {"format": {"type": "xml"}}}, "text.format.type", "expected 'text'"),
    ({"input": "hi", "tool_choice": "sometimes"}, "tool_choice", "expected 'auto'"),  # checked without tools too
    ({"input": "hi", "tool_choice": "required"}, "tool_choice", "'tools' offers none"),
    ({"input": "hi", "tool_choice": {"type": "function", "name": "f"}}, "tool_choice", "'tools' offers none"),
    ({"input": "hi", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}},
     "tool_choice", "which is not in 'tools'"),
    # what a Response echoes back must still read as the SDK's Response
    ({"input": "hi", "metadata": {"a": 1}}, "metadata.a", "expected a string"),
    ({"input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16 keys"),
    ({"input": "hi", "reasoning": "high"}, "reasoning", "expected an object"),
    ({"input": "hi", "truncation": "sideways"}, "truncation", "expected 'auto' or 'disabled'"),
    ({"input": "hi", "user": 5}, "user", "expected a string"),
    ({"input": "hi", "parallel_tool_calls": "yes"}, "parallel_tool_calls", "expected a boolean"),
    ({"input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]}, "input[0].call_id",
     "no function call found"),
    # the chat-completions checks behind the ingress name the Responses parameters too
    ({"input": "hi", "reasoning": {"effort": "ultra"}}, "reasoning.effort", "'reasoning.effort' must be one of"),
    ({"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": "x"}]}, "tools[0].parameters",
     "must be"),
])
def test_bad_requests_get_openai_errors(stack, body, param, fragment):
    gw, _ = stack
    status, _, raw = http("POST", gw.url + "/v1/responses", {"model": "via-openai", **body},
                          headers={"authorization": f"Bearer {MASTER}"})
    error = json.loads(raw)["error"]
    assert status == 400 and error["type"] == "invalid_request_error" and error["param"] == param
    assert fragment in error["message"]


def test_unknown_model_and_response_ids_are_404_and_an_unknown_previous_response_a_400(client, stack):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.responses.create(model="ghost", input="hi")
    with pytest.raises(openai.NotFoundError, match="Response with id 'resp_abc' not found"):
        client.responses.retrieve("resp_abc")
    with pytest.raises(openai.BadRequestError, match="Previous response with id 'resp_abc' not found") as info:
        client.responses.create(model="via-openai", input="hi", previous_response_id="resp_abc")
    assert info.value.body["param"] == "previous_response_id"
    assert info.value.body["code"] == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError, match="not available through this gateway"):
        client.responses.cancel("resp_abc")
    gw, _ = stack
    status, _, _ = http("POST", gw.url + "/v1/responses", {"model": "via-openai", "input": "hi"})
    assert status == 401


def test_idempotency_key_replays_the_same_response(client, stack):
    _, mock = stack
    before = mock.stats()["completed"]
    headers = {"Idempotency-Key": "resp-idem-1"}
    first = client.responses.create(model="via-openai", input="Once only", extra_headers=headers)
    again = client.responses.create(model="via-openai", input="Once only", extra_headers=headers)
    assert again.id == first.id and again.output_text == first.output_text
    assert mock.stats()["completed"] == before + 1


@pytest.mark.parametrize("model", MODELS)
def test_previous_response_id_continues_a_stored_conversation(client, stack, model):
    _, mock = stack
    first = client.responses.create(model=model, input="My name is Ada.", instructions="Be brief.")
    second = client.responses.create(model=model, input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text == REPLY
    sent = upstream(mock)
    texts = [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in sent["messages"]]
    # The history goes first; the first request's instructions are not carried over (as OpenAI does).
    assert texts == ["My name is Ada.", REPLY, "What is my name?"]
    assert "system" not in sent

    # A function call answered in the next turn, streamed this time; each stored Response can be read back.
    called = client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER],
                                     previous_response_id=second.id)
    call = called.output[0]
    assert call.type == "function_call"
    with client.responses.stream(model=model, tools=[WEATHER], tool_choice="none", previous_response_id=called.id,
                                 input=[{"type": "function_call_output", "call_id": call.call_id,
                                         "output": '{"temp_c": 21}'}]) as stream:
        final = stream.get_final_response()
    assert final.output_text == REPLY
    sent = upstream(mock)
    if model == "via-openai":
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user", "assistant", "user",
                                                         "assistant", "tool"]
        assert sent["messages"][5]["tool_calls"][0]["id"] == call.call_id
    again = client.responses.retrieve(final.id)  # (the stream helper's copy adds its own `parsed` fields)
    assert (again.id, again.output_text, again.usage, again.status) == (final.id, final.output_text, final.usage,
                                                                        final.status)
    assert client.responses.retrieve(first.id).output_text == REPLY

    # What the last Response was given: the whole conversation before it, then its own input (newest first).
    items = client.responses.input_items.list(final.id, order="asc", limit=100).data
    assert [(i.type, getattr(i, "role", None)) for i in items] == [
        ("message", "user"), ("message", "assistant"), ("message", "user"), ("message", "assistant"),
        ("message", "user"), ("function_call", None), ("function_call_output", None)]
    assert items[0].content[0].text == "My name is Ada." and items[5].call_id == call.call_id
    assert items[6].output == '{"temp_c": 21}'
    newest_first = client.responses.input_items.list(final.id, limit=3)
    assert [i.id for i in newest_first.data] == [i.id for i in reversed(items)][:3] and newest_first.has_more
    rest = client.responses.input_items.list(final.id, limit=100, after=newest_first.last_id)
    assert [i.id for i in newest_first.data + rest.data] == [i.id for i in reversed(items)] and not rest.has_more
    assert [i.id for i in client.responses.input_items.list(final.id, order="asc", limit=100).data] == [
        i.id for i in items]  # ids are stable across listings


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_repeats_its_ids_does_not_merge_two_conversations(client, stack, stream):
    def ask(question: str, previous: str | None = None):
        if not stream:
            return client.responses.create(model="same-id", input=question, previous_response_id=previous)
        with client.responses.stream(model="same-id", input=question, previous_response_id=previous) as s:
            return s.get_final_response()

    _, mock = stack
    first, second = ask("Capital of France?"), ask("Favourite fruit: bananas.")
    assert first.id != second.id and first.output[0].id != second.output[0].id
    assert client.responses.retrieve(second.id).output_text == REPLY
    ask("And again?", previous=second.id)
    sent = json.dumps(upstream(mock)["messages"])
    assert "bananas" in sent and "France" not in sent


def test_stored_responses_belong_to_their_key_and_can_be_deleted(client, stack):
    gw, _ = stack
    status, _, raw = http("POST", gw.url + "/admin/keys", {"name": "other"},
                          headers={"authorization": f"Bearer {MASTER}"})
    assert status == 201, raw
    other = openai.OpenAI(api_key=json.loads(raw)["key"], base_url=gw.url + "/v1", max_retries=0, timeout=15)
    first = client.responses.create(model="via-openai", input="Remember 42.")
    second = client.responses.create(model="via-openai", input="What number?", previous_response_id=first.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(first.id)
    with pytest.raises(openai.BadRequestError, match="'limit'"):
        client.responses.input_items.list(first.id, limit=0)
    with pytest.raises(openai.BadRequestError, match="not found"):
        other.responses.create(model="via-openai", input="Which?", previous_response_id=first.id)

    unstored = client.responses.create(model="via-openai", input="Forget this.", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)

    auth = {"authorization": f"Bearer {MASTER}"}
    status, _, raw = http("DELETE", f"{gw.url}/v1/responses/{first.id}", headers=auth)
    assert status == 200 and json.loads(raw) == {"id": first.id, "object": "response", "deleted": True}
    assert http("DELETE", f"{gw.url}/v1/responses/{first.id}", headers=auth)[0] == 404
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    # The conversation that continued it cannot be continued with half its history: a clear 400.
    with pytest.raises(openai.BadRequestError, match="has expired or was deleted"):
        client.responses.create(model="via-openai", input="And now?", previous_response_id=second.id)


def test_openapi_describes_the_stored_response_endpoints(stack):
    from openapi_spec_validator import validate

    gw, _ = stack
    doc = json.loads(http("GET", gw.url + "/openapi.json")[2])
    validate(doc)
    paths = doc["paths"]
    assert set(paths["/v1/responses/{response_id}"]) == {"get", "delete"}
    listing = paths["/v1/responses/{response_id}/input_items"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"response_id", "limit", "order", "after"}
    assert set(paths["/v1/responses/{response_id}"]["get"]["responses"]) >= {"200", "401", "404"}
