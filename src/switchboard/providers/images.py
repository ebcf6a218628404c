"""Turning an image reference from a chat request into bytes a provider accepts.

Clients send images as `image_url` parts holding either an http(s) URL or a
`data:<mime>;base64,...` URL. Providers such as Anthropic, Gemini and Bedrock
want the bytes inline, so the gateway fetches URLs itself. Fetching arbitrary
URLs on a client's behalf is a server-side request forgery risk: unless a
deployment sets `allow_private_image_urls`, every address the host resolves to
must be globally routable (no private, loopback, link-local, reserved,
multicast or unspecified address), redirects are re-checked hop by hop, and
the download is bounded in size and time. (The pooled client resolves the
host again when it connects; a DNS answer that changes between the check and
the connection is not caught. Deployments that must rule that out should let
clients send data: URLs only, behind an egress proxy.)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

from switchboard.errors import InvalidRequest
from switchboard.providers.documents import without_whitespace
from switchboard.http.client import HttpClient, HttpClientError, Timeouts

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
_MAX_REDIRECTS = 3

# Leading bytes of the formats providers accept, for when the server's content-type is missing or generic.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def _fail(message: str, param: str | None) -> InvalidRequest:
    where = f" ({param})" if param else ""
    return InvalidRequest(f"image{where}: {message}", param=param, code="invalid_image_url")


def sniff_mime(data: bytes) -> str | None:
    """The image type given by the data's magic bytes, if it is a common one."""
    for magic, mime in _SIGNATURES:
        if data.startswith(magic):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_mime(declared: str, data: bytes) -> str:
    """The media type to send for an image: what its bytes say when they are a known format (a mislabelled
    image, which OpenAI accepts, is refused by Claude as not matching), else the declared type, with the
    common alias image/jpg as image/jpeg."""
    sniffed = sniff_mime(data)
    if sniffed is not None:
        return sniffed
    return "image/jpeg" if declared == "image/jpg" else declared


def parse_data_url(url: str, *, param: str | None = None,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, bytes] | None:
    """(mime, bytes) of a `data:` URL; None when `url` is not a data URL.

    A data URL that is malformed (not base64, no media type, bad padding)
    raises `InvalidRequest` rather than returning None, so callers can tell
    "not a data URL" from "a broken one".
    """
    if url[:5].lower() != "data:":
        return None
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise _fail("data URL has no ',' separating the header from the data", param)
    fields = [f.strip() for f in header.split(";")]
    mime = fields[0].lower() or "text/plain"
    if "base64" not in (f.lower() for f in fields[1:]):
        raise _fail("data URL must be base64-encoded (data:<mime>;base64,...)", param)
    if len(payload) * 3 // 4 > max_bytes:
        raise _fail(f"image is larger than {max_bytes} bytes", param)
    try:
        data = base64.b64decode(without_whitespace(payload), validate=True)
    except (binascii.Error, ValueError):
        raise _fail("data URL holds invalid base64", param) from None
    sent = image_mime(mime, data)
    if not sent.startswith("image/"):
        raise _fail(f"data URL media type {mime!r} is not an image", param)
    return sent, data


def _is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved
                or addr.is_multicast or addr.is_unspecified) and addr.is_global


async def _check_host(host: str, port: int, param: str | None) -> None:
    """Refuse a host unless every address it resolves to is globally routable."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _fail(f"cannot resolve host {host!r}: {exc.strerror or exc}", param) from None
    if not infos:
        raise _fail(f"cannot resolve host {host!r}", param)
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]
        try:
            addr = ipaddress.ip_address(raw)
        except ValueError:
            raise _fail(f"host {host!r} resolved to an unusable address", param) from None
        if not _is_public(addr):
            raise _fail(f"refusing to fetch from non-public address {raw} (host {host!r}); "
                        "set the deployment option allow_private_image_urls to allow it", param)


def _mime_of(content_type: str, data: bytes, url: str, param: str | None) -> str:
    mime = content_type.split(";", 1)[0].strip().lower()
    sent = image_mime(mime, data)
    if not sent.startswith("image/"):
        raise _fail(f"{url} did not return an image (content-type {mime or 'missing'!r})", param)
    return sent


async def load_image(url: str, client: HttpClient, *, allow_private: bool = False,
                     max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 10.0,
                     param: str | None = None) -> tuple[str, bytes]:
    """(mime type, raw bytes) of an image given as an http(s) URL or a data: URL.

    Every failure (bad URL, refused address, HTTP error, too large, too slow,
    not an image) raises `InvalidRequest`: the client sent a reference the
    gateway cannot use, which is a 400 and must not trigger a fallback.
    """
    if not isinstance(url, str) or not url:
        raise _fail("image URL must be a non-empty string", param)
    inline = parse_data_url(url, param=param, max_bytes=max_bytes)
    if inline is not None:
        return inline
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(url, client, allow_private, max_bytes, timeout, param)
    except TimeoutError:
        raise _fail(f"fetching {url} took longer than {timeout:g}s", param) from None


async def _fetch(url: str, client: HttpClient, allow_private: bool, max_bytes: int,
                 timeout: float, param: str | None) -> tuple[str, bytes]:
    timeouts = Timeouts(connect=timeout, read=timeout, total=timeout)
    for _ in range(_MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise _fail("image URL must be an http(s) URL or a data: URL", param)
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise _fail(f"invalid port in {url}", param) from None
        if not allow_private:
            await _check_host(parts.hostname, port, param)
        headers = {"accept": "image/*", "user-agent": "switchboard-image-fetch"}
        try:
            response = await client.request("GET", url, headers=headers, timeouts=timeouts)
        except HttpClientError as exc:
            raise _fail(f"cannot fetch {url}: {exc}", param) from None
        if response.status in (301, 302, 303, 307, 308) and response.headers.get("location"):
            response.release()
            url = urljoin(url, response.headers["location"])
            continue
        if response.status >= 400:
            response.release()
            raise _fail(f"fetching {url} failed with HTTP {response.status}", param)
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            response.release()
            raise _fail(f"image at {url} is larger than {max_bytes} bytes", param)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _fail(f"image at {url} is larger than {max_bytes} bytes", param)
                chunks.append(chunk)
        except HttpClientError as exc:
            raise _fail(f"fetching {url} broke off: {exc}", param) from None
        finally:
            response.release()
        data = b"".join(chunks)
        return _mime_of(response.headers.get("content-type", ""), data, url, param), data
    raise _fail(f"too many redirects fetching the image (more than {_MAX_REDIRECTS})", param)
