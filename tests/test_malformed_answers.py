"""An upstream 200 whose JSON is not in its provider's format is the upstream's failure: a 502 that fails over.

The answers come from a bare HTTP server standing in for a misbehaving upstream (a broken proxy, a
half-compatible server): valid JSON, wrong shape. Before, the adapters raised inside their parsing, the
client got a 500 "internal error" and a stream lost its connection without an error event.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support import GatewayProc, MockProc, http

from switchboard.testing.mock_bedrock import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY

MASTER = "sk-test-master-malformed"
# provider kind -> a 200 answer in the wrong shape, and a stream whose second event is in the wrong shape
ANSWERS = {
    "anthropic": {"type": "message", "content": "not a list", "stop_reason": "end_turn"},
    "gemini": {"candidates": [{"content": {"parts": "bad"}, "finishReason": "STOP"}]},
    "bedrock": {"output": {"message": {"role": "assistant", "content": ["x"]}}, "stopReason": "end_turn"},
    "ollama": {"message": {"content": "hi"}, "done": True, "prompt_eval_count": "n/a"},
}
STREAMS = {
    "anthropic": b'event: message_start\ndata: {"type": "message_start", "message": {"id": "m", "usage": {}}}\n\n'
                 b'event: content_block_start\ndata: {"type": "content_block_start", "index": 0, '
                 b'"content_block": {"type": "text", "text": ""}}\n\n'
                 b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
                 b'"delta": {"type": "text_delta", "text": "Hi"}}\n\n'
                 b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": "x"}\n\n',
    "gemini": b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}\n\n'
              b'data: {"candidates": [{"content": {"parts": ["bad"]}}]}\n\n',
    "ollama": b'{"message": {"content": "Hi"}, "done": false}\n{"message": "str", "done": false}\n',
}


def kind_of(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "anthropic"
    if "enerateContent" in path:  # :generateContent, :streamGenerateContent
        return "gemini"
    return "bedrock" if path.startswith("/model/") else "ollama"


class Garbled(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        sent = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        kind = kind_of(self.path)
        stream = sent.get("stream") is True or "streamGenerateContent" in self.path
        body = STREAMS[kind] if stream else json.dumps(ANSWERS[kind]).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if stream else "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("malformed")
    garbled = ThreadingHTTPServer(("127.0.0.1", 0), Garbled)
    threading.Thread(target=garbled.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{garbled.server_address[1]}"
    mock = MockProc(tmp, {"healthy": {"reply": "healthy here"}})
    upstream = {"anthropic": {"model": "claude-x", "api_key": "${UP_KEY}"},
                "gemini": {"model": "gemini-x", "api_key": "${UP_KEY}"},
                "bedrock": {"model": "anthropic.claude-x", "region": "us-east-1",
                            "aws_access_key_id": "${AWS_KEY_ID}", "aws_secret_access_key": "${AWS_SECRET}"},
                "ollama": {"model": "llama-x"}}
    healthy = {"provider": "openai", "model": "healthy", "base_url": mock.url + "/v1"}
    models = {}
    for kind, settings in upstream.items():
        garbled_dep = {"provider": kind, "base_url": url, **settings}
        models[kind] = {"deployments": [garbled_dep], "retries": {"max_attempts": 1}}
        models[f"{kind}-or-healthy"] = {"deployments": [garbled_dep, healthy], "strategy": "ordered"}
    gw = GatewayProc(tmp, {"auth": {"master_key": "${SB_MASTER}"}, "models": models},
                     env={"SB_MASTER": MASTER, "UP_KEY": "k", "AWS_KEY_ID": MOCK_ACCESS_KEY_ID,
                          "AWS_SECRET": MOCK_SECRET_ACCESS_KEY})
    yield gw
    gw.stop()
    mock.stop()
    garbled.shutdown()


def chat(gw, model: str, **extra):
    return http("POST", gw.url + "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
                headers={"authorization": f"Bearer {MASTER}"})


@pytest.mark.parametrize("kind", list(ANSWERS))
def test_an_answer_in_the_wrong_shape_is_a_502_that_fails_over(stack, kind):
    status, _, body = chat(stack, kind)
    error = json.loads(body)["error"]
    assert status == 502 and error["type"] == "upstream_error", body
    assert "not in the provider's format" in error["message"] and kind in error["message"]
    status, headers, body = chat(stack, f"{kind}-or-healthy")
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "healthy here"
    assert headers["x-switchboard-attempts"] == "2"


@pytest.mark.parametrize("kind", list(STREAMS))
def test_a_stream_event_in_the_wrong_shape_ends_the_stream_with_an_error_event(stack, kind):
    status, _, body = chat(stack, kind, stream=True)
    events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    assert status == 200 and events[-1] != "[DONE]", events
    error = json.loads(events[-1])["error"]
    assert error["code"] == "stream_interrupted" and "not in the provider's format" in error["message"]
    assert any(json.loads(e).get("choices") and json.loads(e)["choices"][0]["delta"].get("content") == "Hi"
               for e in events[:-1])
