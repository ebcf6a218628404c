"""Fuzzing the gateway's API from its own OpenAPI document: no input makes the gateway's own code answer 5xx.

Upstream failures are legitimately 502/503/504, so the upstream here is a
healthy mock; any 5xx is then the gateway's own fault.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import GatewayProc, MockProc, http

MASTER = "sk-fuzz-master-key-0000"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    mock = MockProc(tmp, {})
    dep = {"provider": "openai", "base_url": mock.url + "/v1"}
    config = {"auth": {"master_key": "${SB_MASTER}"},
              "models": {"chat": {"deployments": [{**dep, "model": "chat-up"}]},
                         "emb": {"deployments": [{**dep, "model": "emb-up"}]}},
              "routers": {"auto": {"strong": "chat", "weak": "emb"}}}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER})
    yield gw
    gw.stop()
    mock.stop()


def test_no_server_errors_on_generated_requests(gateway):
    """schemathesis generates requests for every operation in /openapi.json (valid and invalid ones)."""
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"}
    for operation in operations:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case):
            case.headers = {**(case.headers or {}), "authorization": f"Bearer {MASTER}"}
            response = case.call(timeout=10)
            assert response.status_code < 500, (case.path, case.body, response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                # Each ingress answers in its own API's error shape.
                expected = {"type", "message"} if case.path.startswith("/v1/messages") else {"message", "type", "param", "code"}
                assert set(error) >= expected, (case.path, error)

        run()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
chat_like = st.fixed_dictionaries(
    {"model": st.sampled_from(["chat", "auto", "nope", 3, None]),
     "messages": st.one_of(json_values, st.lists(st.fixed_dictionaries(
         {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]),
          "content": json_values}), max_size=3))},
    optional={"stream": json_values, "temperature": json_values, "max_tokens": json_values, "tools": json_values,
              "stop": json_values, "response_format": json_values, "stream_options": json_values, "n": json_values},
)
responses_like = st.fixed_dictionaries(
    {"model": st.sampled_from(["chat", "auto", "nope", 3, None]),
     "input": st.one_of(json_values, st.lists(st.fixed_dictionaries(
         {"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "x"]),
          "role": st.sampled_from(["user", "system", "assistant", "developer", "x"]),
          "content": json_values, "call_id": json_values, "name": json_values, "arguments": json_values,
          "output": json_values}), max_size=3))},
    optional={"stream": json_values, "instructions": json_values, "max_output_tokens": json_values,
              "tools": json_values, "tool_choice": json_values, "text": json_values, "reasoning": json_values,
              "temperature": json_values},
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(chat_like, responses_like, json_values),
       path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]))
def test_no_server_errors_on_arbitrary_json(gateway, body, path):
    status, _, raw = http("POST", gateway.url + path, body, headers={"authorization": f"Bearer {MASTER}"})
    assert status < 500, (path, body, raw[:300])
    if status != 200:
        assert "error" in json.loads(raw)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200))
def test_no_server_errors_on_arbitrary_bytes(gateway, raw):
    status, _, body = http("POST", gateway.url + "/v1/chat/completions", raw=raw,
                           headers={"authorization": f"Bearer {MASTER}"})
    assert status == 400 and "error" in json.loads(body)
