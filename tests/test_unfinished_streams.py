"""A stream whose upstream body ends cleanly but before the stream's own end is a broken stream, not an answer.

A proxy or a dying upstream worker can close a chunked body politely: no dropped connection, just no
`[DONE]` / finish reason / `message_stop` / `messageStop` / `done` line. For every provider kind the
client must get the `stream_interrupted` error event (no `[DONE]`), and the request log a 502.
"""

from __future__ import annotations

import json

import pytest
from provider_helpers import every_provider_stack
from support import http, wait_for

MASTER = "sk-test-master-unfinished-streams"
stack = every_provider_stack("unfinished-streams", MASTER)
UPSTREAM = {"gpt": "gpt-4o-mini", "claude": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash",
            "bedrock": "anthropic.claude-3-5-sonnet-20241022-v2:0", "ollama": "llama3.2"}


@pytest.mark.parametrize("model", list(UPSTREAM))
def test_a_stream_that_ends_before_its_end_is_interrupted_not_answered(stack, model):
    gw, mock = stack
    reply = "one two three four five six seven eight"
    mock.set_behaviour({UPSTREAM[model]: {"reply": reply, "faults": [{"kind": "end", "after_chunks": 3}]}})
    try:
        status, _, body = http("POST", gw.url + "/v1/chat/completions", {
            "model": model, "stream": True, "messages": [{"role": "user", "content": f"unfinished {model}"}]},
            headers={"authorization": f"Bearer {MASTER}"})
    finally:
        mock.set_behaviour({UPSTREAM[model]: {"reply": reply}})
    events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    assert status == 200 and events[-1] != "[DONE]", events
    assert json.loads(events[-1])["error"]["code"] == "stream_interrupted"
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in map(json.loads, events[:-1])
                   if c.get("choices"))
    assert text and len(text) < len(reply)
    rows = wait_for(lambda: [r for r in gw.requests_logged() if r["model_requested"] == model
                             and r["status"] == 502] or None)
    assert json.loads(rows[-1]["extra"])["stream_interrupted"] is True
