"""The gateway's HTTP server against clients that misbehave, over raw sockets: oversized heads, pipelined garbage,
`Expect: 100-continue` with a body too large, HTTP/1.0 streams, and connections that stall or idle."""

from __future__ import annotations

import socket
import time

import pytest

from support import GatewayProc, MockProc

MASTER = "sk-http-master-0123456789"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    mock = MockProc(tmp, {"m-up": {"reply": "one two three"}})
    config = {"auth": {"master_key": "${SB_MASTER}"},
              "server": {"read_timeout": 1, "idle_timeout": 2, "max_body_bytes": 2048},
              "models": {"m": {"deployments": [{"provider": "openai", "model": "m-up", "base_url": mock.url + "/v1"}]}}}
    gateway = GatewayProc(tmp, config, env={"SB_MASTER": MASTER})
    yield gateway
    gateway.stop()
    mock.stop()


def connect(gw) -> socket.socket:
    host, port = gw.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_an_oversized_head_is_a_431(gw):
    with connect(gw) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    with connect(gw) as sock:  # many small headers too
        sock.sendall(b"GET /health HTTP/1.1\r\n" + b"".join(b"x-%d: 1\r\n" % i for i in range(500)) + b"\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 431 ")


def test_a_bad_request_pipelined_after_a_good_one_is_answered_after_it(gw):
    with connect(gw) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\nGARBAGE\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 400 " in answer


def test_expect_100_continue_with_a_body_too_large_is_refused_before_it_is_sent(gw):
    with connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 20000000\r\nexpect: 100-continue\r\n\r\n")
        answer = read_all(sock)  # no body sent: the answer comes anyway, and the connection closes
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_an_http10_client_gets_a_stream_without_chunking(gw):
    body = (b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}')
    with connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.0\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer " + MASTER.encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        answer = read_all(sock)  # the stream ends with the connection
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding" not in head.lower()
    assert rest.startswith(b"data: ") and rest.rstrip().endswith(b"data: [DONE]")


def test_a_stalled_request_gets_a_408_and_an_idle_connection_is_closed(gw):
    with connect(gw) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")  # the head never ends
        started = time.monotonic()
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 5
    with connect(gw) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        started = time.monotonic()
        answer = read_all(sock)  # keep-alive, then nothing: closed after idle_timeout
    assert answer.startswith(b"HTTP/1.1 200 ") and 1.5 < time.monotonic() - started < 6


def test_the_sse_decoder_joins_a_crlf_split_between_reads():
    from switchboard.http.sse import SSEDecoder

    decoder = SSEDecoder()
    events = [*decoder.feed(b"event: delta\r\ndata: a\r"), *decoder.feed(b"\ndata: b\r\n\r"), *decoder.feed(b"\n")]
    assert events == [("delta", "a\nb")]  # one event with two data lines, as if read in one piece
