"""A small, fast HTTP/1.1 server on asyncio and httptools.

Why not an ASGI server and framework: the gateway's budget is a fraction of a
millisecond per request, and a generic stack spends most of that on layers we
do not need (scope dicts, middleware chains, receive/send callables). This
module parses with httptools (llhttp, the parser uvicorn uses), hands a
`Request` to one async handler, and writes a `Response` or a
`StreamResponse` (chunked transfer encoding, with write back-pressure). It
supports keep-alive, pipelined requests (answered in order), a body size cap,
`Expect: 100-continue`, client disconnects (the handler task is cancelled) and
a graceful drain on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any

import httptools

try:  # the kernel's count of unsent bytes on a socket (Linux: SIOCOUTQ, which is TIOCOUTQ)
    import fcntl
    import termios
    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - not Linux
    _OUTQ = None

log = logging.getLogger("switchboard.http")

MAX_HEAD_BYTES = 64 * 1024  # request line and headers: a 431 beyond
MAX_HEADERS = 200
MAX_PIPELINED = 32  # requests read ahead of the one being answered before reading pauses
ABANDON_SECONDS = 5.0  # the longest a stream whose client left may take to reach the step that closes it

_REASONS = {
    100: b"Continue", 200: b"OK", 201: b"Created", 204: b"No Content", 400: b"Bad Request",
    401: b"Unauthorized", 402: b"Payment Required", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict", 413: b"Payload Too Large",
    415: b"Unsupported Media Type", 422: b"Unprocessable Entity", 429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
    504: b"Gateway Timeout", 529: b"Site Overloaded",
}


class Request:
    """One parsed HTTP request. Header names are lower-case."""

    __slots__ = ("method", "path", "query", "headers", "body", "client", "disconnected", "http10")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes, client: str) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client
        self.disconnected = False
        self.http10 = False  # an HTTP/1.0 client: no chunked responses

    def query_params(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.query, keep_blank_values=True))


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None,
                 content_type: str = "application/json") -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}
        if content_type and "content-type" not in self.headers:
            self.headers["content-type"] = content_type


class StreamResponse:
    """A response whose body is produced by an async iterator of byte chunks."""

    __slots__ = ("status", "headers", "chunks")

    def __init__(self, chunks: AsyncIterator[bytes], status: int = 200, headers: dict[str, str] | None = None,
                 content_type: str = "text/event-stream") -> None:
        self.status = status
        self.chunks = chunks
        self.headers = headers if headers is not None else {}
        self.headers.setdefault("content-type", content_type)


Handler = Callable[[Request], Awaitable[Response | StreamResponse]]


class AbortConnection(Exception):
    """Raised by a handler or a stream to drop the connection without a response (fault injection)."""

_date_cache: list[Any] = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


def _head(status: int, headers: dict[str, str], extra: bytes) -> bytes:
    # One join and one encode for all headers: this runs for every response.
    lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):  # a value with CR/LF: no splitting
        lines = "".join([f"{k}: {_one_line(str(v))}\r\n" for k, v in headers.items()])
    return b"HTTP/1.1 %d %s\r\ndate: %s\r\nserver: switchboard\r\n%s%s" % (
        status, _REASONS.get(status, b"Unknown"), _date_header(), lines.encode("latin-1", "replace"), extra)


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


class _Refusal(Exception):
    """An answer decided while reading a request (413, 431...): sent in turn, after the requests before it."""

    def __init__(self, status: int, message: str, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.path = path  # the request's path where it was read, for the API's own error shape


def openai_error_body(status: int, message: str, path: str) -> bytes:
    """The default shape of a refusal: OpenAI's."""
    import orjson

    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "client", "_url", "_headers", "_body", "_body_size",
                 "_too_large", "_pending", "_task", "_closed", "_can_write", "_keep_alive", "_current",
                 "_header_name", "_head_size", "_reading_since", "_idle_since", "_refused", "_paused",
                 "_blocked_since", "_blocked_size")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._pending: deque[tuple[Request | _Refusal, bool]] = deque()
        self._task: asyncio.Task | None = None
        self._closed = False
        self._can_write: asyncio.Event | None = None
        self._current: Request | None = None
        self._reading_since: float | None = None  # a request has begun and is not complete (the sweeper's clock)
        self._idle_since = time.monotonic()
        self._refused = False  # a refusal is queued: nothing more is read
        self._paused = False
        self._blocked_since: float | None = None  # writing is paused and the client has read nothing since then
        self._blocked_size = 0  # how much was unsent then
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        self._head_size = 0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.server._connections.discard(self)
        if self._current is not None:
            self._current.disconnected = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._can_write is not None:
            self._can_write.set()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(_Refusal(400, "protocol upgrades are not supported"))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._refuse(cause if isinstance(cause, _Refusal) else _Refusal(400, f"malformed HTTP request: {exc}"))
        except httptools.HttpParserError as exc:
            self._refuse(_Refusal(400, f"malformed HTTP request: {exc}"))

    def pause_writing(self) -> None:
        if self._can_write is None:
            self._can_write = asyncio.Event()
        self._can_write.clear()
        self._blocked_since = time.monotonic()
        self._blocked_size = _unsent(self.transport)  # type: ignore[arg-type]

    def resume_writing(self) -> None:
        self._blocked_since = None
        if self._can_write is not None:
            self._can_write.set()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._reading_since = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        self._count_head(len(name) + len(value))
        if len(self._headers) > MAX_HEADERS:
            raise _Refusal(431, f"more than {MAX_HEADERS} request headers")

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD_BYTES:
            raise _Refusal(431, f"the request line and headers exceed {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body_bytes:
            self._too_large = True
        if self._headers.get("expect", "").lower() == "100-continue":
            if self._too_large:  # answer now: the client waits for a go-ahead before it sends the body
                path = httptools.parse_url(self._url).path.decode("latin-1")
                raise _Refusal(413, f"request body exceeds the limit of {self.server.max_body_bytes} bytes", path)
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body_size += len(body)
        if self._body_size > self.server.max_body_bytes:
            self._too_large = True
            self._body = []
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self._url)
        path = url.path.decode("latin-1")
        query = url.query.decode("latin-1") if url.query else ""
        method = self.parser.get_method().decode("latin-1")
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        request = Request(method, path, query, self._headers, body, self.client)
        keep_alive = self.parser.should_keep_alive()
        if self.parser.get_http_version() == "1.0":
            request.http10 = True
        too_large = self._too_large
        self._reset()
        self._reading_since = None
        if too_large:
            self._refuse(_Refusal(413, f"request body exceeds the limit of {self.server.max_body_bytes} bytes", path))
            return
        self._queue(request, keep_alive)

    def _queue(self, item: Request | _Refusal, keep_alive: bool) -> None:
        self._pending.append((item, keep_alive))
        if len(self._pending) > MAX_PIPELINED and not self._paused and self.transport is not None:
            self.transport.pause_reading()  # a client that pipelines without reading waits for its answers
            self._paused = True
        if self._task is None:
            self._task = self.server.loop.create_task(self._serve_pending())

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer `refusal` after the requests already read (in order), then close; read nothing more."""
        if self._refused or self._closed:
            return
        self._refused = True
        self._queue(refusal, False)

    # -- serving
    def _write_refusal(self, refusal: _Refusal) -> None:
        body = self.server.error_body(refusal.status, str(refusal), refusal.path)
        self.transport.write(_head(refusal.status, {"content-type": "application/json"},  # type: ignore[union-attr]
                                   b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)) + body)
        self.transport.close()  # type: ignore[union-attr]
        self._closed = True

    def expired(self, now: float) -> bool:
        """For the server's sweeper: close a connection whose request stalls (408), that idles too long, or
        whose client has read nothing of an answer for write_timeout (its handler is cancelled: a disconnect)."""
        if self._closed or self.transport is None:
            return False
        if self._blocked_since is not None:
            size = _unsent(self.transport)
            if size < self._blocked_size:  # a slow reader, but a reader: the clock starts again
                self._blocked_since, self._blocked_size = now, size
        if self._blocked_since is not None and now - self._blocked_since > self.server.write_timeout:
            log.info("closing %s: it read nothing of its answer for %gs", self.client, self.server.write_timeout)
            self.transport.abort()
            return True
        if self._task is not None or self._pending:
            return False
        if self._reading_since is not None:
            if now - self._reading_since > self.server.read_timeout:
                self._refuse(_Refusal(408, f"the request was not completed within {self.server.read_timeout:g}s"))
                return True
            return False
        if now - self._idle_since > self.server.idle_timeout:
            self.transport.close()
            return True
        return False

    async def _serve_pending(self) -> None:
        try:
            while self._pending and not self._closed:
                request, keep_alive = self._pending.popleft()
                if self._paused and len(self._pending) <= MAX_PIPELINED // 2:
                    self.transport.resume_reading()  # type: ignore[union-attr]
                    self._paused = False
                if isinstance(request, _Refusal):
                    self._write_refusal(request)
                    return
                self._current = request
                keep_alive = keep_alive and not self.server.draining
                try:
                    response = await self.server.handler(request)
                except asyncio.CancelledError:
                    raise
                except AbortConnection:
                    self.transport.abort()  # type: ignore[union-attr]
                    self._closed = True
                    return
                except Exception:  # the handler must never leak a stack trace to the client
                    log.exception("unhandled error serving %s %s", request.method, request.path)
                    response = Response(500, b'{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}')
                if self._closed:
                    if isinstance(response, StreamResponse):
                        await _abandon(response.chunks)
                    return
                if isinstance(response, StreamResponse):
                    if request.http10:
                        keep_alive = False  # an HTTP/1.0 client knows no chunking: the stream ends with the connection
                    try:
                        await self._write_stream(response, keep_alive, request.method == "HEAD", request.http10)
                    except AbortConnection:
                        self.transport.abort()  # type: ignore[union-attr]
                        self._closed = True
                        return
                    except Exception:
                        # Headers are gone already: all we can do is cut the stream short.
                        log.exception("stream for %s %s failed", request.method, request.path)
                        self.transport.abort()  # type: ignore[union-attr]
                        self._closed = True
                        return
                else:
                    self._write_response(response, keep_alive, request.method == "HEAD")
                    if self._can_write is not None and not self._can_write.is_set():
                        await self._can_write.wait()  # a client that does not read gets nothing more queued
                self._current = None
                if not keep_alive:
                    self.transport.close()  # type: ignore[union-attr]
                    self._closed = True
                    return
        finally:
            self._task = None
            self._current = None
            self._idle_since = time.monotonic()

    def _write_response(self, response: Response, keep_alive: bool, head_only: bool) -> None:
        body = response.body
        extra = b"content-length: %d\r\n%s\r\n" % (len(body), b"" if keep_alive else b"connection: close\r\n")
        head = _head(response.status, response.headers, extra)
        self.transport.write(head if head_only else head + body)  # type: ignore[union-attr]

    async def _write_stream(self, response: StreamResponse, keep_alive: bool, head_only: bool,
                            http10: bool = False) -> None:
        """Chunked for HTTP/1.1; for an HTTP/1.0 client (which knows no chunking) the body runs to the close."""
        transport = self.transport
        if http10:
            extra = b"cache-control: no-cache\r\nconnection: close\r\n\r\n"
        else:
            extra = b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n%s\r\n" % (
                b"" if keep_alive else b"connection: close\r\n")
        transport.write(_head(response.status, response.headers, extra))  # type: ignore[union-attr]
        chunks = response.chunks
        try:
            if not head_only:
                async for chunk in chunks:
                    if self._closed:
                        return
                    if chunk:
                        frame = chunk if http10 else b"%x\r\n%s\r\n" % (len(chunk), chunk)
                        transport.write(frame)  # type: ignore[union-attr]
                        if self._can_write is not None and not self._can_write.is_set():
                            await self._can_write.wait()
            if not self._closed and not head_only and not http10:
                transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
        finally:
            await _aclose(chunks)


def _unsent(transport: asyncio.Transport) -> int:
    """Bytes written and not yet taken by the client: our buffer plus the kernel's send queue. The kernel's part
    matters: with an autotuned send buffer of megabytes, a client can read for a minute before ours shrinks."""
    size = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if _OUTQ is not None and sock is not None:
        try:
            size += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
        except OSError:
            pass
    return size


async def _abandon(chunks: AsyncIterator[bytes]) -> None:
    """Close a stream whose client left before it began. An async generator closed before its first step runs
    none of its code, so the clean-up in its `finally` (settling the request, releasing the upstream) would be
    skipped: take one step (bounded: its first chunk is normally ready), then close it."""
    try:
        await asyncio.wait_for(anext(chunks), ABANDON_SECONDS)  # type: ignore[call-overload]
    except Exception:  # ended, failed or timed out: the close is what matters
        pass
    finally:
        await _aclose(chunks)


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a half-consumed stream must not mask the real outcome
            log.debug("error closing a response stream", exc_info=True)


class HttpServer:
    """Serves one handler on a host and port."""

    def __init__(self, handler: Handler, *, max_body_bytes: int = 10 * 1024 * 1024, read_timeout: float = 30.0,
                 idle_timeout: float = 75.0, write_timeout: float = 60.0,
                 error_body: Callable[[int, str, str], bytes] = openai_error_body) -> None:
        self.handler = handler
        self.error_body = error_body  # (status, message, path) -> the body of a refusal (413, 431...)
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout  # to finish sending a request once begun (slowloris): a 408 after
        self.idle_timeout = idle_timeout  # an idle keep-alive connection is closed after this
        self.write_timeout = write_timeout  # a client that reads nothing of its answer for this long is dropped
        self.draining = False
        self._connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    async def start(self, host: str, port: int, *, sock: Any = None, reuse_port: bool = False) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        self.loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=4096)
        else:
            self._server = await self.loop.create_server(lambda: _Connection(self), host, port, backlog=4096,
                                                         reuse_port=reuse_port or None)
        self._sweeper = self.loop.create_task(self._sweep())
        return self._server.sockets[0].getsockname()[1]

    async def _sweep(self) -> None:
        """Close connections that stall, idle or stop reading too long: one pass a second, no timer per request."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self._connections):
                conn.expired(now)

    @property
    def in_flight(self) -> int:
        return sum(1 for c in self._connections if c._task is not None)

    async def shutdown(self, drain_seconds: float = 30.0, on_cut_off: Callable[[], None] | None = None) -> None:
        """Stop accepting, let in-flight requests (and streams) finish, then close. Requests still running after
        `drain_seconds` are cut off: `on_cut_off()` is called first, and their handlers are cancelled and
        awaited, so whatever they record on the way out (a log entry, a charge) is not lost."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            for conn in list(self._connections):
                if conn._task is None and not conn._pending and conn.transport is not None:
                    conn.transport.close()
            if not self._connections:
                break
            await asyncio.sleep(0.02)
        remaining = list(self._connections)
        handlers = [conn._task for conn in remaining if conn._task is not None]
        if handlers and on_cut_off is not None:
            on_cut_off()
        for conn in remaining:
            if conn.transport is not None:
                conn.transport.abort()
        if handlers:
            await asyncio.wait(handlers, timeout=5.0)
