"""Small real PDFs for the tests, and how the mock upstreams read them.

`build_pdf` writes a valid PDF 1.4 file (catalog, page tree, a Helvetica font,
one uncompressed content stream per page, a cross-reference table), so tests
need no binary fixtures. `read_pdf` is the mock models' reader: it counts the
pages and collects the strings shown with `Tj`, which is all a PDF built here
holds. Each page also costs `PAGE_TOKENS`, as providers bill a page's image.
"""

from __future__ import annotations

import re

PAGE_TOKENS = 258  # what each page costs besides its text (Gemini's figure for a page image)

_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_SHOWN = re.compile(rb"\(((?:\\.|[^\\)])*)\)\s*Tj")


def _escape(text: str) -> bytes:
    return text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def build_pdf(pages: list[str]) -> bytes:
    """A PDF with one line of (Latin-1) text on each page."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = b"BT /F1 12 Tf 72 720 Td (" + _escape(text) + b") Tj ET"
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>" % content)
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def read_pdf(data: bytes) -> tuple[int, str]:
    """(pages, text) of a PDF: its page objects, and the strings its content streams show, a line each."""
    shown = [re.sub(rb"\\(.)", rb"\1", m.group(1)).decode("latin-1") for m in _SHOWN.finditer(data)]
    return len(_PAGE.findall(data)), "\n".join(shown)


def file_prompt(mime: str, data: bytes) -> tuple[str, int]:
    """What a mock model reads of a file: (its text, the tokens it costs besides that text)."""
    if mime == "application/pdf":
        pages, text = read_pdf(data)
        return text, pages * PAGE_TOKENS
    return data.decode("utf-8", "replace"), 0
