"""Estimated prompt tokens of the images and documents in a chat request, by the rules each provider bills by.

An image is counted from its pixels, read from the header of an inline (data: URL) image, and a PDF from
its pages. The rules, from the providers' documentation:

* OpenAI, by the upstream model. *Tiles* (GPT-4o, 4.1, o1, o3, gpt-5): the image is fitted into
  2048 x 2048, its short side scaled down to 768, and each 512-pixel tile costs `tile` tokens on top of
  `base` (GPT-4o: 85 + 170 a tile; ``detail: low`` is the base alone; gpt-4o-mini bills 33 times as many
  tokens at its lower price). *Patches* (gpt-4.1-mini and -nano, gpt-5-mini and -nano, o4-mini): one
  token a 32-pixel square, the image scaled down to at most 1,536 of them, times the model's multiplier.
* Anthropic (``claude``, also used for Bedrock, Ollama and others): width x height / 750, after fitting the
  long side into 1,568 pixels, at most 1,600 tokens.
* Gemini (``gemini``): 258 tokens for an image within 384 x 384, else 258 per 768 x 768 tile.

A PDF page becomes an image of the page (a US-letter page at 150 dpi) plus its text, taken as a typical
page's 500 tokens; Gemini bills 258 tokens a page. A text file counts as text; an uploaded file (an OpenAI
file id) as one page. An image given by URL, or one whose header cannot be read, counts as a 1024 x 1024
picture.

These are estimates for rate limits and token counting; credit holds use bounds instead (demand.py).
"""

from __future__ import annotations

import asyncio
import binascii
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from switchboard.providers.documents import data_url_mime, without_whitespace

if TYPE_CHECKING:
    from switchboard.config import Deployment, ModelConfig
    from switchboard.core.request import ChatRequest


@dataclass(frozen=True, slots=True)
class Scheme:
    """How a model bills an image: OpenAI's 512-pixel tiles (`base` + `tile` a tile) or 32-pixel patches
    (times `multiplier`), Anthropic's pixel area (``claude``), or Gemini's 768-pixel tiles."""

    kind: Literal["tiles", "patches", "claude", "gemini"]
    base: int = 0
    tile: int = 0
    multiplier: float = 1.0


OPENAI = Scheme("tiles", 85, 170)
CLAUDE = Scheme("claude")
GEMINI = Scheme("gemini")

# OpenAI's models whose images cost other than GPT-4o's; the first name the upstream model starts with wins
_OPENAI_MODELS = (
    ("gpt-4o-mini", Scheme("tiles", 2833, 5667)),
    ("gpt-4.1-mini", Scheme("patches", multiplier=1.62)),
    ("gpt-4.1-nano", Scheme("patches", multiplier=2.46)),
    ("gpt-5-mini", Scheme("patches", multiplier=1.62)),
    ("gpt-5-nano", Scheme("patches", multiplier=2.46)),
    ("o4-mini", Scheme("patches", multiplier=1.72)),
    ("computer-use-preview", Scheme("tiles", 65, 129)),
    ("gpt-5", Scheme("tiles", 70, 140)),
    ("o1", Scheme("tiles", 75, 150)),
    ("o3", Scheme("tiles", 75, 150)),
)
_MAX_PATCHES = 1536
_UNKNOWN_SIZE = (1024, 1024)
_PAGE_SIZE = (1275, 1650)  # a US-letter page rendered at 150 dpi
_PAGE_TEXT = 500  # tokens of a typical page of prose
_INLINE_CHARS = 256 * 1024  # more inline data than this is estimated on a worker thread
_HEADER_CHARS = 64 * 1024  # base64 read first when looking for an image's size (JPEG metadata can be long)
_INFLATE_BYTES = 64 * 1024 * 1024  # the most a PDF's object streams are inflated to when counting its pages

_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_OBJECT_STREAM = re.compile(rb"/Type\s*/ObjStm\b.*?stream\r?\n", re.DOTALL)


def scheme_of(provider: str, upstream_model: str = "") -> Scheme:
    """The rule a provider kind counts images by, for the upstream model it serves."""
    if provider in ("openai", "azure"):
        name = upstream_model.lower().rsplit("/", 1)[-1]
        return next((scheme for prefix, scheme in _OPENAI_MODELS if name.startswith(prefix)), OPENAI)
    return GEMINI if provider == "gemini" else CLAUDE


def model_scheme(model: ModelConfig) -> Scheme:
    """The rule of the model's (first) deployment."""
    if not model.deployments:
        return CLAUDE
    return scheme_of(model.deployments[0].provider, model.deployments[0].upstream_model)


def media_of(request: ChatRequest, dep: Deployment) -> Callable[[], int]:
    """The request's images and documents counted by the rule of the deployment, deferred: only a local count
    (an upstream that reported no usage) runs it, on its worker thread."""
    return lambda: media_tokens(request.media_parts(), scheme_of(dep.provider, dep.upstream_model))


async def estimate_media(parts: tuple[dict[str, Any], ...], model: ModelConfig) -> int:
    """`media_tokens` by the model's rules, on a worker thread when the parts hold much inline data."""
    if _inline_chars(parts) <= _INLINE_CHARS:
        return media_tokens(parts, model_scheme(model))
    return await asyncio.get_running_loop().run_in_executor(None, media_tokens, parts, model_scheme(model))


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, GIF or WebP image; None when it cannot be read."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
    except struct.error:
        pass
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        b = data[21:25]
        return 1 + (b[0] | (b[1] & 0x3F) << 8), 1 + (b[1] >> 6 | b[2] << 2 | (b[3] & 0x0F) << 10)
    if kind == b"VP8X":
        b = data[24:30]
        return 1 + int.from_bytes(b[:3], "little"), 1 + int.from_bytes(b[3:], "little")
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def pdf_pages(data: bytes) -> int:
    """The page objects of a PDF, including those packed in compressed object streams; at least 1."""
    pages = len(_PAGE.findall(data))
    budget = _INFLATE_BYTES
    if not pages:
        for match in _OBJECT_STREAM.finditer(data):
            if budget <= 0:
                break
            try:
                stream = zlib.decompressobj().decompress(memoryview(data)[match.end():], budget)
            except zlib.error:
                continue
            budget -= len(stream)
            pages += len(_PAGE.findall(stream))
    return max(1, pages)


def image_tokens(scheme: Scheme, size: tuple[int, int] | None, detail: str | None = None) -> int:
    """The prompt tokens of one image of `size` pixels (unknown: a 1024-pixel square)."""
    width, height = size if size and size[0] > 0 and size[1] > 0 else _UNKNOWN_SIZE
    if scheme.kind == "tiles":
        if detail == "low":
            return scheme.base
        scale = min(1.0, 2048 / max(width, height))
        scale *= min(1.0, 768 / (min(width, height) * scale))
        return scheme.base + scheme.tile * math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
    if scheme.kind == "patches":
        return round(_patches(width, height) * scheme.multiplier)
    if scheme.kind == "gemini":
        if width <= 384 and height <= 384:
            return 258
        return 258 * math.ceil(width / 768) * math.ceil(height / 768)
    scale = min(1.0, 1568 / max(width, height))
    return min(1600, math.ceil(width * scale * height * scale / 750))


def _patches(width: int, height: int) -> int:
    """OpenAI's 32-pixel patches covering an image, after scaling it down to at most 1,536 of them."""
    if math.ceil(width / 32) * math.ceil(height / 32) > _MAX_PATCHES:
        scale = math.sqrt(32 * 32 * _MAX_PATCHES / (width * height))
        scale *= min(math.floor(width * scale / 32) / (width * scale / 32),
                     math.floor(height * scale / 32) / (height * scale / 32))
        width, height = int(width * scale), int(height * scale)
    return min(_MAX_PATCHES, math.ceil(width / 32) * math.ceil(height / 32))


def page_tokens(scheme: Scheme) -> int:
    """The prompt tokens of one PDF page."""
    return 258 if scheme.kind == "gemini" else image_tokens(scheme, _PAGE_SIZE) + _PAGE_TEXT


def _inline_chars(parts: Iterable[dict[str, Any]]) -> int:
    """How much inline data the parts hold (to decide whether counting them belongs off the event loop)."""
    return sum(len(url) - start for _, url, start in map(_payload, parts) if start)


def media_tokens(parts: Iterable[dict[str, Any]], scheme: Scheme) -> int:
    """The estimated prompt tokens of image and file parts (reads PDFs whole: `estimate_media` calls it
    off the event loop when they are large)."""
    total = 0
    for part in parts:
        mime, url, start = _payload(part)
        if part.get("type") == "image_url":
            spec = part.get("image_url")
            detail = spec.get("detail") if isinstance(spec, dict) else None
            total += image_tokens(scheme, _image_size_of(url, start) if start else None, detail)
        elif mime.startswith("text/"):
            total += (len(url) - start) * 3 // 16  # four bytes of text a token
        else:
            total += page_tokens(scheme) * (pdf_pages(_decode(url[start:])) if start else 1)
    return total


def _payload(part: dict[str, Any]) -> tuple[str, str, int]:
    """(media type, data URL, where its base64 starts) of an inline image or file part; start 0 when the part
    is not inline (the URL's base64 is not copied: it can be megabytes)."""
    image = part.get("type") == "image_url"
    spec = part.get("image_url" if image else "file")
    url = spec.get("url" if image else "file_data") if isinstance(spec, dict) else None
    if not isinstance(url, str) or url[:5].lower() != "data:":
        return "", "", 0
    comma = url.find(",")
    if comma < 0:
        return "", "", 0
    return data_url_mime(url), url, comma + 1


def _decode(b64: str) -> bytes:
    """The bytes of (a prefix of) base64 text; empty when it is not base64."""
    b64 = without_whitespace(b64)
    try:
        return binascii.a2b_base64(b64[:len(b64) - len(b64) % 4])
    except (binascii.Error, ValueError):
        return b""


def _image_size_of(url: str, start: int) -> tuple[int, int] | None:
    """The size of a data URL's image, reading more of it only where the header is not found sooner."""
    for chars in (4096, _HEADER_CHARS, len(url)):
        size = image_size(_decode(url[start:start + chars]))
        if size is not None or start + chars >= len(url):
            return size
    return None
