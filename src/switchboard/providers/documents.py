"""Documents (PDFs and text files) in a chat request, read once for the adapters that translate them.

The canonical form is OpenAI's `file` content part holding the file inline:
``{"type": "file", "file": {"file_data": "data:application/pdf;base64,...", "filename": "report.pdf"}}``.
OpenAI-format upstreams take it as it is; Anthropic wants a `document` block,
Gemini an `inlineData` part and Bedrock a `document` block, all with the same
base64. An uploaded file's id (`file.file_id`) only means something to OpenAI,
so the other adapters refuse it with a 400 that says to send the file inline.

Only the data URL's header and first bytes are checked here (the base64 of a
large PDF is passed on, not decoded on the event loop); text files are decoded
where a provider wants their text.
"""

from __future__ import annotations

import base64
import binascii
import html
from dataclasses import dataclass
from typing import Any

from switchboard.errors import InvalidRequest

PDF = "application/pdf"
# Text formats every adapter can pass on.
TEXT_FORMATS = {"text/plain": "txt", "text/markdown": "md", "text/csv": "csv", "text/html": "html"}
# A document's file extension by media type (Bedrock names formats by it).
EXTENSIONS = {PDF: "pdf", **TEXT_FORMATS}


@dataclass(frozen=True, slots=True)
class Document:
    mime: str  # one of EXTENSIONS
    b64: str
    filename: str | None

    @property
    def is_text(self) -> bool:
        return self.mime != PDF

    def text(self, param: str) -> str:
        """A text file's contents."""
        try:
            return base64.b64decode(self.b64, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise _fail(param, "is not valid base64 of UTF-8 text") from None


def inlined(doc: Document, param: str) -> str:
    """A text file as the model reads it where the provider takes no text files: its contents in a `document`
    tag that names the file."""
    name = f' name="{html.escape(doc.filename)}"' if doc.filename else ""
    return f"<document{name}>\n{doc.text(param)}\n</document>"


def data_url_mime(url: str) -> str:
    """The media type a data: URL declares ('' for anything else); reads the header only (the base64 after it
    can be megabytes, and is not copied)."""
    if url[:5].lower() != "data:":
        return ""
    comma = url.find(",")
    return url[5:comma if comma >= 0 else len(url)].split(";", 1)[0].strip().lower()


def without_whitespace(b64: str) -> str:
    """Base64 as data URLs may wrap it (line breaks, spaces), joined up; copied only when it has any."""
    return "".join(b64.split()) if any(ws in b64 for ws in ("\n", "\r", " ", "\t")) else b64


def _fail(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' {message}.", param=param, code="invalid_file")


def document_of(part: dict[str, Any], param: str, provider: str) -> Document:
    """The document a canonical `file` part holds inline, or a 400 naming the parameter."""
    spec = part.get("file")
    if not isinstance(spec, dict):
        raise _fail(f"{param}.file", "must be an object with 'file_data'")
    data = spec.get("file_data")
    if not isinstance(data, str):
        if spec.get("file_id") is not None:
            raise InvalidRequest(f"'{param}.file.file_id': uploaded file ids exist only at OpenAI; provider "
                                 f"{provider!r} needs the file inline as 'file_data' (a base64 data: URL).",
                                 param=f"{param}.file.file_id", code="unsupported_parameter")
        raise _fail(f"{param}.file.file_data", "is required")
    filename = spec.get("filename")
    return Document(*_parse_data_url(data, f"{param}.file.file_data"), filename if isinstance(filename, str) else None)


def _parse_data_url(url: str, param: str) -> tuple[str, str]:
    """(mime, base64) of a document's data URL."""
    if url[:5].lower() != "data:":
        raise _fail(param, "must be a data: URL (data:application/pdf;base64,...)")
    header, comma, payload = url[5:].partition(",")
    fields = [f.strip().lower() for f in header.split(";")]
    if not comma or "base64" not in fields[1:]:
        raise _fail(param, "must be a base64 data: URL (data:application/pdf;base64,...)")
    b64 = without_whitespace(payload)
    if not b64:
        raise _fail(param, "holds an empty file")
    try:
        head = base64.b64decode(b64[:8], validate=True)
    except (binascii.Error, ValueError):
        raise _fail(param, "holds invalid base64") from None
    mime = fields[0]
    if head.startswith(b"%PDF-") and mime in ("", PDF, "application/octet-stream"):
        return PDF, b64
    if mime == PDF:
        raise _fail(param, "is not a PDF (it does not start with %PDF-)")
    if mime in TEXT_FORMATS:
        return mime, b64
    raise _fail(param, f"has media type {mime or 'missing'!r}; documents may be PDF or text "
                       f"({', '.join(TEXT_FORMATS)})")
