"""Structured outputs and typed tool calls through every provider, parsed by the SDKs into the client's own types.

The mock models answer with a value of the schema they received, so a translation that loses part of a schema
(a nested model, a required field, an enum, a list) makes the SDK's parse fail here."""

from __future__ import annotations

import enum
import json

import anthropic
import openai
import pytest
from pydantic import BaseModel

from provider_helpers import every_provider_stack

MASTER = "sk-test-master-structured-0123"
PROVIDERS = ("gpt", "claude", "gemini", "bedrock", "ollama")


class Mood(enum.Enum):
    happy = "happy"
    sad = "sad"


class Person(BaseModel):
    name: str
    age: int


class Report(BaseModel):
    title: str
    mood: Mood
    score: float
    people: list[Person]
    lead: Person
    note: str | None


class GetWeather(BaseModel):
    """Current weather for a city."""

    city: str
    days: int
    unit: Mood


stack = every_provider_stack("structured", MASTER)


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(api_key=MASTER, base_url=stack[0].url + "/v1", max_retries=0, timeout=15)


@pytest.mark.parametrize("model", PROVIDERS)
def test_parse_into_a_pydantic_model(client, model):
    completion = client.chat.completions.parse(model=model, max_tokens=400, response_format=Report,
                                               messages=[{"role": "user", "content": "Report, please."}])
    report = completion.choices[0].message.parsed
    assert isinstance(report, Report) and isinstance(report.lead, Person) and report.mood is Mood.happy
    assert len(report.people) == 1 and isinstance(report.people[0].age, int) and report.title


@pytest.mark.parametrize("model", PROVIDERS)
def test_parse_a_typed_tool_call(client, model):
    completion = client.chat.completions.parse(model=model, max_tokens=200, tools=[openai.pydantic_function_tool(
        GetWeather)], messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "GetWeather" and isinstance(call.function.parsed_arguments, GetWeather)
    assert call.function.parsed_arguments.unit is Mood.happy


@pytest.mark.parametrize("model", PROVIDERS)
def test_the_anthropic_sdk_gets_typed_tool_input(stack, model):
    client = anthropic.Anthropic(api_key=MASTER, base_url=stack[0].url, max_retries=0, timeout=15)
    message = client.messages.create(model=model, max_tokens=200, tools=[{
        "name": "get_weather", "input_schema": GetWeather.model_json_schema()}],
        messages=[{"role": "user", "content": "Weather in Paris?"}])
    block = next(b for b in message.content if b.type == "tool_use")
    assert GetWeather.model_validate(block.input).days >= 1 and message.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", PROVIDERS)
def test_a_tool_without_parameters_is_called_with_an_empty_object(client, model, stream):
    ask = {"model": model, "max_tokens": 50, "tools": [{"type": "function", "function": {"name": "what_time_is_it"}}],
           "messages": [{"role": "user", "content": "Time?"}]}
    if stream:
        deltas = [c.choices[0].delta for c in client.chat.completions.create(**ask, stream=True) if c.choices]
        arguments = "".join(call.function.arguments or "" for d in deltas for call in d.tool_calls or ())
    else:
        arguments = client.chat.completions.create(**ask).choices[0].message.tool_calls[0].function.arguments
    assert json.loads(arguments) == {}
