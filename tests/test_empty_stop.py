"""An empty stop string stops nothing on every provider: it is never sent upstream as a stop sequence (Bedrock
refuses a sequence of length 0; Ollama matches "" at once and answers nothing). Real gateway, mock upstreams."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provider_helpers import every_provider_stack
from support import http

MASTER = "sk-test-master-empty-stop-0123"

stack = every_provider_stack("empty-stop", MASTER)


def sent_stops(model: str, body: dict[str, Any]) -> Any:
    """The stop sequences the upstream got, in its own wire format (None: none sent)."""
    if model == "claude":
        return body.get("stop_sequences")
    if model == "gemini":
        return (body.get("generationConfig") or {}).get("stopSequences")
    if model == "bedrock":
        return (body.get("inferenceConfig") or {}).get("stopSequences")
    if model == "ollama":
        return (body.get("options") or {}).get("stop")
    return body.get("stop")


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini", "bedrock", "ollama"])
@pytest.mark.parametrize("stop, sent", [("", None), (["END", ""], ["END"]), ([], None)],
                         ids=["alone", "in-a-list", "empty-list"])
def test_an_empty_stop_string_stops_nothing(stack, model, stop, sent):
    gw, mock = stack
    status, _, raw = http("POST", gw.url + "/v1/chat/completions",
                          {"model": model, "messages": [{"role": "user", "content": "Say something"}], "stop": stop},
                          {"authorization": f"Bearer {MASTER}"})
    assert status == 200, raw
    assert json.loads(raw)["choices"][0]["message"]["content"], "the answer was cut to nothing"
    assert sent_stops(model, mock.stats()["last_request"]) == sent
