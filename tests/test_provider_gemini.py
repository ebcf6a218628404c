"""The Gemini adapter end to end: openai SDK -> gateway -> mock Gemini API (generateContent wire format)."""

from __future__ import annotations

import json

import openai
import pytest

from provider_helpers import (CONTENT_POLICY, ERROR_CASES, PNG_B64, PNG_DATA_URL, TIME_TOOL, WEATHER_TOOL, Stack,
                              check_error_kind, error_upstreams, finish_reasons, streamed_text, streamed_tool_calls,
                              tool_round_trip, usage_of)
from switchboard.testing.mock_gemini import THOUGHTS_TOKENS, signature_for

REPLY = "Bonjour from the mock Gemini model, how can I help?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    upstreams = {
        "gemini-flash": {"reply": REPLY},
        "gemini-2.5-flash": {"reply": REPLY},
        "gemini-blocked": {"safety_block": "prompt"},
        "gemini-limited": ERROR_CASES["rate_limit"][0],
        "gemini-unsafe": {"safety_block": "output", "reply": "Some words that will be filtered here"},
        **error_upstreams("gemini"),
        "gpt-4o-fallback": {"reply": "from an OpenAI model"},  # OpenAI-compatible: see the signature tests
        "gemini-3-behind-a-proxy": {"reply": "from Gemini behind an OpenAI-compatible proxy"},
    }
    openai_compatible = {"provider": "openai", "base_url": "{mock}/v1"}
    s = Stack(tmp_path_factory.mktemp("gemini"), "gemini", upstreams,
              {"api_key": "${GEMINI_KEY}", "allow_private_image_urls": True}, env={"GEMINI_KEY": "gm-test-key"},
              overrides={"gpt-4o-fallback": openai_compatible, "gemini-3-behind-a-proxy": openai_compatible})
    yield s
    s.stop()


def test_plain_chat_translates_request_and_response(stack):
    completion = stack.chat(model="gemini-flash", temperature=0.3, top_p=0.9, max_tokens=200, stop=["END"], seed=7,
                            messages=[{"role": "system", "content": "Be terse."},
                                      {"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Hello!"},
                                      {"role": "user", "content": [{"type": "text", "text": "How are you?"}]}])
    sent = stack.sent()
    assert sent["paths"].get("/v1beta/models/gemini-flash:generateContent") == 1
    assert sent["headers"]["x-goog-api-key"] == "gm-test-key"
    assert "authorization" not in sent["headers"]
    body = sent["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]},
                                {"role": "model", "parts": [{"text": "Hello!"}]},
                                {"role": "user", "parts": [{"text": "How are you?"}]}]
    assert body["generationConfig"] == {"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 200,
                                        "stopSequences": ["END"], "seed": 7}
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == "gemini-flash"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == REPLY
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == usage.completion_tokens_details.reasoning_tokens + (len(REPLY) + 3) // 4
    assert usage.completion_tokens_details.reasoning_tokens == THOUGHTS_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_is_sse_and_maps_chunks_and_usage(stack):
    chunks = stack.stream(model="gemini-flash", messages=[{"role": "user", "content": "Stream it"}],
                          stream_options={"include_usage": True})
    sent = stack.sent()
    assert sent["paths"].get("/v1beta/models/gemini-flash:streamGenerateContent") == 1
    assert sent["query"] == "alt=sse"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert streamed_text(chunks) == REPLY
    assert finish_reasons(chunks) == ["stop"]
    assert len({c.id for c in chunks}) == 1
    usage = usage_of(chunks)
    assert usage.completion_tokens == (len(REPLY) + 3) // 4 + THOUGHTS_TOKENS


def test_stream_without_include_usage_hides_usage(stack):
    chunks = stack.stream(model="gemini-flash", messages=[{"role": "user", "content": "Stream it"}])
    assert all(c.usage is None for c in chunks)
    assert streamed_text(chunks) == REPLY


def test_tool_call_and_tool_result_round_trip(stack):
    completion = stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "Weather in Paris?"}],
                            tools=[WEATHER_TOOL, TIME_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    body = stack.sent()["body"]
    declarations = body["tools"][0]["functionDeclarations"]
    assert declarations[0] == {"name": "get_weather", "description": "Current weather for a city", "parameters": {
        "type": "OBJECT", "properties": {"city": {"type": "STRING", "description": "City name"},
                                         "unit": {"type": "STRING", "enum": ["c", "f"]}},
        "required": ["city"]}}, "additionalProperties is not part of Gemini's Schema and must be dropped"
    assert declarations[1] == {"name": "get_time"}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments) == {"city": "mock", "unit": "c"}

    follow_up = stack.chat(model="gemini-flash", messages=tool_round_trip(call.id), tools=[WEATHER_TOOL])
    body = stack.sent()["body"]
    # A history without the call's thought signature gets Google's placeholder (see the next test).
    assert body["contents"][1] == {"role": "model", "parts": [{
        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
        "thoughtSignature": "skip_thought_signature_validator"}]}
    assert body["contents"][2] == {"role": "user", "parts": [{"functionResponse": {
        "name": "get_weather", "response": {"temp_c": 21, "sky": "clear"}}}]}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert follow_up.choices[0].message.content == REPLY and follow_up.choices[0].finish_reason == "stop"


def test_thought_signatures_round_trip_on_the_tool_call(stack):
    tools = [WEATHER_TOOL]
    question = {"role": "user", "content": "Weather in Paris?"}
    completion = stack.chat(model="gemini-flash", messages=[question], tools=tools)
    message = completion.choices[0].message
    signature = signature_for("get_weather")
    # Where Google's own OpenAI endpoint puts it.
    assert message.tool_calls[0].model_extra["extra_content"] == {"google": {"thought_signature": signature}}
    streamed = stack.stream(model="gemini-flash", messages=[question], tools=tools)
    deltas = [call for chunk in streamed if chunk.choices for call in chunk.choices[0].delta.tool_calls or ()]
    assert deltas[0].model_extra["extra_content"] == {"google": {"thought_signature": signature}}

    # The SDK's message, passed back as is, carries the signature; the gateway returns it to Gemini.
    result = {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": '{"temp_c": 21}'}
    follow_up = stack.client.chat.completions.create(model="gemini-flash", messages=[question, message, result],
                                                     tools=tools)
    assert follow_up.choices[0].message.content == REPLY
    part = stack.sent()["body"]["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == signature

    # A signature that Gemini did not issue is refused upstream, and the client gets Gemini's reason.
    forged = message.model_dump(exclude_none=True)
    forged["tool_calls"][0]["extra_content"] = {"google": {"thought_signature": "Zm9yZ2Vk"}}
    with pytest.raises(openai.BadRequestError, match="Corrupted thought signature"):
        stack.client.chat.completions.create(model="gemini-flash", messages=[question, forged, result], tools=tools)

    # Without one (a client that drops the field, a history another model wrote), the placeholder goes on the
    # first call of the step, and the turn is answered instead of refused; 2.x models get no placeholder.
    bare = message.model_dump(exclude_none=True)
    del bare["tool_calls"][0]["extra_content"]
    assert stack.chat(model="gemini-flash", messages=[question, bare, result], tools=tools).choices[0].message.content
    assert stack.sent()["body"]["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    stack.chat(model="gemini-2.5-flash", messages=[question, bare, result], tools=tools)
    assert "thoughtSignature" not in stack.sent()["body"]["contents"][1]["parts"][0]


def test_a_signed_history_reaches_other_models_without_the_google_only_field(stack):
    tools = [WEATHER_TOOL]
    question = {"role": "user", "content": "Weather in Paris?"}
    message = stack.chat(model="gemini-flash", messages=[question], tools=tools).choices[0].message
    assert message.tool_calls[0].model_extra["extra_content"]
    history = [question, message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": '{"temp_c": 21}'}]
    # OpenAI refuses fields it does not know in a message (its mock does too): the gateway leaves it out there...
    answer = stack.chat(model="gpt-4o-fallback", messages=history, tools=tools, tool_choice="none")
    assert answer.choices[0].message.content == "from an OpenAI model"
    sent = stack.sent()["body"]["messages"][1]["tool_calls"][0]
    assert set(sent) == {"id", "type", "function"} and sent["id"] == message.tool_calls[0].id
    # ... and keeps it for a Gemini model that an OpenAI-compatible endpoint serves.
    stack.chat(model="gemini-3-behind-a-proxy", messages=history, tools=tools)
    sent = stack.sent()["body"]["messages"][1]["tool_calls"][0]
    assert sent["extra_content"] == {"google": {"thought_signature": signature_for("get_weather")}}


def test_reasoning_effort_becomes_thinking_config_and_thoughts_come_back(stack):
    from switchboard.testing.mock_gemini import THOUGHT_SUMMARY

    question = [{"role": "user", "content": "Why is the sky blue?"}]
    answer = stack.chat(model="gemini-flash", messages=question, reasoning_effort="low")
    assert stack.sent()["body"]["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "low",
                                                                         "includeThoughts": True}
    message = answer.choices[0].message
    assert message.content == REPLY and message.model_extra["reasoning_content"] == THOUGHT_SUMMARY
    # 2.x models think by token budget, as Google's own OpenAI endpoint maps the effort.
    stack.chat(model="gemini-2.5-flash", messages=question, reasoning_effort="medium")
    assert stack.sent()["body"]["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8192,
                                                                         "includeThoughts": True}
    stack.chat(model="gemini-2.5-flash", messages=question, reasoning_effort="none")
    assert stack.sent()["body"]["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
    chunks = stack.stream(model="gemini-flash", messages=question, reasoning_effort="high")
    deltas = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == THOUGHT_SUMMARY
    assert streamed_text(chunks) == REPLY
    # Anthropic's `thinking` (a Messages-format client, say) maps by the effort its budget fits.
    stack.chat(model="gemini-2.5-flash", messages=question,
               extra_body={"thinking": {"type": "enabled", "budget_tokens": 4000}})
    assert stack.sent()["body"]["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8192,
                                                                         "includeThoughts": True}
    # Without an effort Gemini decides, and no summaries are asked for.
    stack.chat(model="gemini-flash", messages=question)
    assert "thinkingConfig" not in stack.sent()["body"].get("generationConfig", {})


def test_logprobs_map_both_ways(stack):
    completion = stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "Hi"}], logprobs=True,
                            top_logprobs=3)
    config = stack.sent()["body"]["generationConfig"]
    assert config["responseLogprobs"] is True and config["logprobs"] == 3
    content = completion.choices[0].logprobs.content
    assert "".join(t.token for t in content) == REPLY
    assert all(t.logprob == -0.05 and len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
               and bytes(t.bytes).decode() == t.token for t in content)
    chunks = stack.stream(model="gemini-flash", messages=[{"role": "user", "content": "Hi"}], logprobs=True)
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert "".join(t.token for t in streamed) == REPLY and all(not t.top_logprobs for t in streamed)
    plain = stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "Hi"}])
    assert plain.choices[0].logprobs is None and "generationConfig" not in stack.sent()["body"]


@pytest.mark.parametrize("choice,mode", [("none", "NONE"), ("required", "ANY"), ("auto", "AUTO")])
def test_tool_choice_modes(stack, choice, mode):
    completion = stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL],
                            tool_choice=choice)
    assert stack.sent()["body"]["toolConfig"] == {"functionCallingConfig": {"mode": mode}}
    assert (completion.choices[0].finish_reason == "tool_calls") == (choice != "none")


def test_streamed_tool_call(stack):
    chunks = stack.stream(model="gemini-flash", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL])
    calls = streamed_tool_calls(chunks)
    assert len(calls) == 1 and calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "mock", "unit": "c"}
    assert finish_reasons(chunks) == ["tool_calls"]


def test_images_by_url_and_data_url_are_inlined(stack):
    stack.chat(model="gemini-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": stack.mock.url + "/images/pixel.png"}},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}}]}])
    parts = stack.sent()["body"]["contents"][0]["parts"]
    assert parts == [{"text": "Compare these"}, {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
                     {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]


def test_unfetchable_image_is_a_400(stack):
    status, error = stack.error(model="gemini-flash", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": stack.mock.url + "/images/missing.png"}}]}])
    assert status == 400 and error["type"] == "invalid_request_error"
    assert "messages[0].content[0]" in error["message"]


def test_response_format_json_schema_and_json_object(stack):
    schema = {"type": "object", "properties": {"answer": {"type": ["string", "null"]},
                                               "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}}},
              "required": ["answer"], "additionalProperties": False,
              "$defs": {"Tag": {"type": "object", "properties": {"name": {"type": "string"}}}}}
    completion = stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "json please"}],
                            response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": schema,
                                                                                     "strict": True}})
    config = stack.sent()["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {"type": "OBJECT", "required": ["answer"], "properties": {
        "answer": {"type": "STRING", "nullable": True},
        "tags": {"type": "ARRAY", "items": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}}}}}
    # the mock answers with a value of the schema it got: the nested $ref survived the translation
    assert json.loads(completion.choices[0].message.content) == {"answer": REPLY, "tags": [{"name": REPLY}]}
    stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "json"}],
               response_format={"type": "json_object"})
    assert stack.sent()["body"]["generationConfig"] == {"responseMimeType": "application/json"}


def test_max_tokens_maps_to_length(stack):
    completion = stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "long"}], max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert stack.sent()["body"]["generationConfig"]["maxOutputTokens"] == 3


def test_blocked_prompt_is_a_content_policy_error(stack):
    for stream in (False, True):
        status, error = stack.error(model="gemini-blocked", stream=stream,
                                    messages=[{"role": "user", "content": "something bad"}])
        assert (status, error["type"], error["code"]) == CONTENT_POLICY
        assert "SAFETY" in error["message"]


def test_unsafe_output_finishes_with_content_filter(stack):
    completion = stack.chat(model="gemini-unsafe", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].finish_reason == "content_filter"
    chunks = stack.stream(model="gemini-unsafe", messages=[{"role": "user", "content": "hi"}])
    assert finish_reasons(chunks) == ["content_filter"]


@pytest.mark.parametrize("kind", sorted(ERROR_CASES))
def test_upstream_errors_map_to_openai_errors(stack, kind):
    check_error_kind(stack, "gemini", kind)


def test_rate_limit_retry_delay_reaches_the_client(stack):
    with pytest.raises(openai.RateLimitError) as info:
        stack.client.chat.completions.create(model="gemini-limited", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "3"


def test_embeddings_use_batch_embed_contents(stack):
    import base64
    import struct

    result = stack.client.embeddings.create(model="gemini-flash", input=["one", "two"], dimensions=8,
                                            encoding_format="float")
    assert [len(d.embedding) for d in result.data] == [8, 8]
    # Gemini answers floats only: asked for base64 (the SDK's default), the gateway encodes them as OpenAI does
    raw = stack.client.embeddings.with_raw_response.create(model="gemini-flash", input=["one", "two"], dimensions=8,
                                                           encoding_format="base64")
    packed = [d["embedding"] for d in json.loads(raw.content)["data"]]
    assert all(isinstance(p, str) for p in packed)
    assert [list(struct.unpack("<8f", base64.b64decode(p))) for p in packed] == \
        [pytest.approx(d.embedding, abs=1e-6) for d in result.data]
    body = stack.sent()["body"]
    assert body == {"requests": [
        {"model": "models/gemini-flash", "content": {"parts": [{"text": "one"}]}, "outputDimensionality": 8},
        {"model": "models/gemini-flash", "content": {"parts": [{"text": "two"}]}, "outputDimensionality": 8}]}


def test_mock_refuses_what_gemini_refuses(stack):
    """The mock is strict like the real API, so a translation bug fails these tests instead of passing silently."""
    from support import http

    url = stack.mock.url + "/v1beta/models/gemini-flash:generateContent"
    key = {"x-goog-api-key": "k"}
    ok = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert http("POST", url, ok, headers=key)[0] == 200
    assert http("POST", url, ok)[0] == 403
    for bad in ({**ok, "messages": []},
                {"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]},
                {"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f", "args": "{}"}}]}]},
                {**ok, "generationConfig": {"max_tokens": 5}},
                {**ok, "generationConfig": {"logprobs": 2}},
                {**ok, "generationConfig": {"responseMimeType": "application/json",
                                            "responseSchema": {"type": "object", "additionalProperties": False}}},
                {**ok, "generationConfig": {"responseMimeType": "application/json", "responseSchema": {
                    "type": "OBJECT", "properties": {"u": {"type": "STRING", "format": "uri"}}}}}):
        status, _, raw = http("POST", url, bad, headers=key)
        assert status == 400 and json.loads(raw)["error"]["status"] == "INVALID_ARGUMENT", bad


def test_json_schema_formats_gemini_refuses_are_dropped(stack):
    """Gemini takes `format` enum/date-time on strings, int32/int64 and float/double on numbers; others are a 400."""
    params = {"type": "object", "required": ["url"], "properties": {
        "url": {"type": "string", "format": "uri", "description": "a link"},
        "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date-time"}, "n": {"type": "integer", "format": "int64"},
        "x": {"type": "number", "format": "decimal"}}}
    want = {"url": {"type": "STRING", "description": "a link"}, "email": {"type": "STRING"},
            "when": {"type": "STRING", "format": "date-time"}, "n": {"type": "INTEGER", "format": "int64"},
            "x": {"type": "NUMBER"}}
    stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "fetch it"}],
               tools=[{"type": "function", "function": {"name": "fetch", "parameters": params}}])
    assert stack.sent()["body"]["tools"][0]["functionDeclarations"][0]["parameters"]["properties"] == want
    stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "x"}],
               response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": params}})
    assert stack.sent()["body"]["generationConfig"]["responseSchema"]["properties"] == want


def test_odd_schemas_and_non_object_arguments_are_handled_not_crashed(stack):
    odd = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": [1, "string", "null"]}}}}}
    stack.chat(model="gemini-flash", messages=[{"role": "user", "content": "hi"}], tools=[odd])
    params = stack.sent()["body"]["tools"][0]["functionDeclarations"][0]["parameters"]
    assert params["properties"]["a"] == {"type": "STRING", "nullable": True}  # a type list's non-names are skipped
    # a function's arguments are an object: anything else is the client's 400, naming it, on every provider
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}
    status, error = stack.error(model="gemini-flash", messages=[
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}], tools=[odd])
    assert status == 400 and error["param"] == "messages[1].tool_calls[0].function.arguments"
