"""A pooled async HTTP/1.1 client for talking to providers.

Why not httpx or aiohttp: per request they cost several times the gateway's
whole latency budget. This client keeps idle keep-alive connections per
origin, parses responses with httptools, and exposes exactly what the
providers need: a status, headers, the whole body, or the body as it streams.

Timeouts: `connect` bounds establishing a connection, `read` bounds every wait
for bytes (the first one is the time to first byte, i.e. TTFT for streams),
and `total` bounds the whole exchange including reading the body.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

# A streamed body buffers at most this much unread before the socket stops being read, so a slow
# client slows its upstream (TCP flow control) instead of piling the stream up in our memory.
STREAM_HIGH_WATER = 256 * 1024
STREAM_LOW_WATER = 64 * 1024


class HttpClientError(Exception):
    """Transport-level failure: the upstream could not be reached or broke off."""


class ConnectError(HttpClientError):
    pass


class ReadTimeout(HttpClientError):
    pass


class ConnectTimeout(ConnectError):
    pass


class ConnectionDropped(HttpClientError):
    pass


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    read: float = 60.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    host_header: str


def host_header(url: str) -> str:
    """The Host header for a URL: the host name, with the port unless it is the scheme's default (RFC 9110 7.2)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    return host if parts.port in (None, 443 if parts.scheme == "https" else 80) else f"{host}:{parts.port}"


class _Conn(asyncio.Protocol):
    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: deque[bytes] = deque()
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future | None = None
        self.streaming = False  # the body is consumed piece by piece: reading pauses above the high water mark
        self.buffered = 0
        self.paused = False

    def reset(self) -> None:
        """Ready for the next response. The parser is kept: llhttp parses one message after another
        on a keep-alive connection, and only connections whose last response completed cleanly are reused."""
        self.status = 0
        self.headers = {}
        self.chunks.clear()
        self.headers_done = False
        self.complete = False
        self.got_bytes = False
        self.streaming = False
        self.buffered = 0
        if self.paused:  # a stream left unread after it completed: the next response must be read
            self.transport.resume_reading()  # type: ignore[union-attr]
            self.paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.headers_done and "content-length" not in self.headers \
                and "chunked" not in self.headers.get("transfer-encoding", ""):
            self.complete = True  # a body delimited by the connection closing
            self.keep_alive = False
        if not self.complete and self.error is None:
            self.error = ConnectionDropped("upstream closed the connection" + (f": {exc}" if exc else ""))
        self._wake()

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = ConnectionDropped(f"malformed upstream response: {exc}")
            self.transport.close()  # type: ignore[union-attr]
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        if self.streaming:
            self.buffered += len(body)
            if self.buffered > STREAM_HIGH_WATER and not self.paused and self.transport is not None:
                self.transport.pause_reading()
                self.paused = True

    def take(self) -> bytes:
        """The oldest unread piece of a streamed body; reading resumes once the buffer has drained."""
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered <= STREAM_LOW_WATER and not self.closed:
            self.transport.resume_reading()  # type: ignore[union-attr]
            self.paused = False
        return chunk

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, deadline: float) -> None:
        """Wait until more data, completion or an error arrives, or the deadline passes."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = loop.call_at(deadline, _expire, self._waiter)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(ReadTimeout("timed out waiting for the upstream"))


class ClientResponse:
    """A response being received. Read it whole with `read()`, or stream it with `iter_bytes()`."""

    def __init__(self, client: HttpClient, conn: _Conn, timeouts: Timeouts, deadline: float) -> None:
        self._client = client
        self._conn = conn
        self._timeouts = timeouts
        self._deadline = deadline
        self.status = conn.status
        self.headers = conn.headers
        self._released = False

    def _next_deadline(self) -> float:
        return min(asyncio.get_running_loop().time() + self._timeouts.read, self._deadline)

    async def read(self) -> bytes:
        conn = self._conn
        try:
            while not conn.complete:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self._next_deadline())
            body = b"".join(conn.chunks)
            conn.chunks.clear()
            return body
        finally:
            self.release()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        conn = self._conn
        conn.streaming = True
        conn.buffered = sum(map(len, conn.chunks))
        try:
            while True:
                while conn.chunks:
                    yield conn.take()
                if conn.complete:
                    return
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self._next_deadline())
        finally:
            self.release()

    def release(self) -> None:
        """Give the connection back to the pool (or close it if it cannot be reused)."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed and conn.error is None:
            self._client._put_idle(conn)
        elif conn.transport is not None:
            conn.transport.close()


class HttpClient:
    """Keep-alive connection pool for many origins."""

    def __init__(self, *, max_idle_per_origin: int = 1024, verify: bool = True) -> None:
        self._idle: dict[_Origin, deque[_Conn]] = {}
        self._max_idle = max_idle_per_origin
        self._verify = verify
        self._ssl: _ssl.SSLContext | None = None
        self._origins: dict[str, tuple[_Origin, str]] = {}

    def _ssl_context(self) -> _ssl.SSLContext:
        if self._ssl is None:
            ctx = _ssl.create_default_context()
            if not self._verify:
                ctx.check_hostname = False
                ctx.verify_mode = _ssl.CERT_NONE
            self._ssl = ctx
        return self._ssl

    def _split(self, url: str) -> tuple[_Origin, str]:
        cached = self._origins.get(url)
        if cached is not None:
            return cached
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"unsupported upstream URL {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        value = (_Origin(parts.scheme, parts.hostname, port, host_header(url)), target)
        if len(self._origins) < 10_000:
            self._origins[url] = value
        return value

    def _put_idle(self, conn: _Conn) -> None:
        conn.reset()
        pool = self._idle.setdefault(conn.origin, deque())
        if len(pool) < self._max_idle:
            pool.append(conn)
        else:
            conn.transport.close()  # type: ignore[union-attr]

    async def _connect(self, origin: _Origin, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        ssl = self._ssl_context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Conn(origin), origin.host, origin.port, ssl=ssl,
                    server_hostname=origin.host if ssl else None)
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting to {origin.host}:{origin.port} timed out") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {origin.host}:{origin.port}: {exc.strerror or exc}") from exc
        return conn

    async def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                      body: bytes = b"", timeouts: Timeouts = Timeouts()) -> ClientResponse:
        """Send a request and wait for the response head; the body is read from the result."""
        origin, target = self._split(url)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + timeouts.total
        head = [f"{method} {target} HTTP/1.1\r\nhost: {origin.host_header}\r\ncontent-length: {len(body)}\r\n"]
        if headers:
            for k, v in headers.items():
                head.append(f"{k}: {v}\r\n")
        head.append("\r\n")
        payload = "".join(head).encode("latin-1") + body

        for attempt in (0, 1):
            pool = self._idle.get(origin)
            reused = bool(pool)
            while pool:
                conn = pool.pop()
                if not conn.closed:
                    break
            else:
                reused = False
                conn = await self._connect(origin, min(timeouts.connect, max(0.001, deadline - loop.time())))
            conn.transport.write(payload)  # type: ignore[union-attr]
            try:
                while not conn.headers_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait(min(loop.time() + timeouts.read, deadline))
            except ConnectionDropped:
                # A pooled connection the server had already closed: the request never
                # reached it, so sending it once more on a fresh connection is safe.
                if reused and attempt == 0 and not conn.got_bytes:
                    continue
                raise
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
            return ClientResponse(self, conn, timeouts, deadline)
        raise ConnectionDropped("upstream closed the connection")  # pragma: no cover - loop always returns or raises

    async def close(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                if conn.transport is not None:
                    conn.transport.close()
        self._idle.clear()
