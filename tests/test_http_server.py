"""The gateway's HTTP server against clients that misbehave, over raw sockets: oversized heads, pipelined garbage,
`Expect: 100-continue` with a body too large, HTTP/1.0 streams, connections that stall, idle or stop reading; and
the upstream client's flow control against a client that reads slowly."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from support import GatewayProc, MockProc, http, wait_for

MASTER = "sk-http-master-0123456789"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    mock = MockProc(tmp, {"m-up": {"reply": "one two three"}, "long-up": {"reply": "word " * 60_000}})
    config = {"auth": {"master_key": "${SB_MASTER}"},
              "server": {"read_timeout": 1, "idle_timeout": 2, "write_timeout": 1, "max_body_bytes": 2048},
              "models": {"m": {"deployments": [{"provider": "openai", "model": "m-up", "base_url": mock.url + "/v1"}]},
                         "long": {"deployments": [{"provider": "openai", "model": "long-up",
                                                   "base_url": mock.url + "/v1"}]}}}
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


def ask_long_stream(gw) -> socket.socket:
    body = b'{"model": "long", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the gateway's writes back up quickly
    host, port = gw.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"authorization: Bearer " + MASTER.encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    return sock


DROPPED = "read nothing of its answer"  # the gateway's log line when it drops a client


def test_a_slow_reader_keeps_its_stream_past_write_timeout(gw):
    dropped = gw.log().count(DROPPED)
    with ask_long_stream(gw) as sock:
        received = b""
        until = time.monotonic() + 4  # four times write_timeout, reading 4 KiB every 0.1 s
        while time.monotonic() < until:
            received += sock.recv(4096)
            time.sleep(0.1)
        assert received.startswith(b"HTTP/1.1 200 ") and gw.log().count(DROPPED) == dropped


def test_a_client_that_stops_reading_its_stream_is_dropped_after_write_timeout(gw):
    with ask_long_stream(gw) as sock:
        dropped = gw.log().count(DROPPED)
        started = time.monotonic()
        # Reads nothing: once the gateway's buffers fill, it waits write_timeout (1 s), swept once a second.
        assert wait_for(lambda: gw.log().count(DROPPED) > dropped, timeout=20, interval=0.2)
        assert time.monotonic() - started > 1
        sock.settimeout(10)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    assert received.startswith(b"HTTP/1.1 200 ") and b"data: [DONE]" not in received  # cut off, not finished
    request_id = received.split(b"x-request-id: ", 1)[1].split(b"\r\n", 1)[0].decode()
    entry = wait_for(lambda: [e for e in gw.requests_logged() if e["request_id"] == request_id], timeout=10)[0]
    assert entry["status"] == 499 and entry["error_type"] == "client_disconnected"
    assert entry["completion_tokens"] < 60_000  # billed for what was produced before the cut, not the whole reply
    status, _, _ = http("GET", gw.url + "/health")
    assert status == 200


def test_a_streamed_upstream_body_is_read_no_faster_than_it_is_consumed():
    from switchboard.http.client import STREAM_HIGH_WATER, HttpClient

    total = 64 * 1024 * 1024
    piece = b"x" * 65536

    async def main() -> None:
        sent = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sent
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
            while sent < total:
                writer.write(piece)
                sent += len(piece)
                await writer.drain()  # blocks while the gateway's side is not reading
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient()
        response = await client.request("GET", f"http://127.0.0.1:{port}/")
        chunks = response.iter_bytes()
        received = len(await anext(chunks))
        await asyncio.sleep(0.5)  # a slow consumer
        stalled_at = sent
        async for chunk in chunks:
            received += len(chunk)
        await client.close()
        server.close()
        # Without flow control the whole 64 MiB would be in our memory by now; with it, the upstream waits on
        # socket buffers (a few MiB on loopback) plus our high water mark.
        assert stalled_at < 16 * 1024 * 1024 and STREAM_HIGH_WATER < 16 * 1024 * 1024
        assert received == total

    asyncio.run(main())


def test_a_stream_cut_off_by_shutdown_is_logged_as_such_with_what_it_cost(tmp_path):
    mock = MockProc(tmp_path, {"slow-up": {"reply": "word " * 200, "tokens_per_second": 20}})
    config = {"auth": {"master_key": "${SB_MASTER}"}, "server": {"drain_seconds": 0.5},
              "models": {"slow": {"deployments": [{"provider": "openai", "model": "slow-up",
                                                   "base_url": mock.url + "/v1"}],
                                  "pricing": {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}}}}
    gw = GatewayProc(tmp_path, config, env={"SB_MASTER": MASTER})
    body = b'{"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    try:
        with connect(gw) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"authorization: Bearer " + MASTER.encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body)
                         + body)
            received = sock.recv(65536)
            while received.count(b"data: ") < 3:  # a few tokens in: ten seconds of stream are left
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
            assert gw.stop() == 0  # SIGTERM: the drain (0.5 s) runs out before the stream ends
            try:
                received += read_all(sock)
            except ConnectionResetError:
                pass
        assert b"data: [DONE]" not in received
        [entry] = gw.requests_logged()  # written before the process exited
        assert entry["status"] == 499 and entry["error_type"] == "gateway_shutdown", entry
        assert 0 < entry["completion_tokens"] < 200 and entry["cost"] > 0  # what the upstream produced and bills
    finally:
        gw.stop()
        mock.stop()


def test_the_sse_decoder_joins_a_crlf_split_between_reads():
    from switchboard.http.sse import SSEDecoder

    decoder = SSEDecoder()
    events = [*decoder.feed(b"event: delta\r\ndata: a\r"), *decoder.feed(b"\ndata: b\r\n\r"), *decoder.feed(b"\n")]
    assert events == [("delta", "a\nb")]  # one event with two data lines, as if read in one piece
