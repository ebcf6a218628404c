"""Reading a text file line by line, where a line that is not UTF-8 is reported with its file and line.

Text mode decodes a file in blocks, so its UnicodeDecodeError names neither the file nor the line;
operators' data files (calibration prompts, training data) need both to be fixed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator


class NotUtf8(ValueError):
    """A line of a text file that is not UTF-8; the message names the file and the line."""


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Each line of the UTF-8 file at ``path`` with its number (from 1), its line ending kept."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NotUtf8(f"{os.fspath(path)}:{number}: not UTF-8 text (byte {exc.start + 1} of the line)") \
                    from None


def not_utf8_message(path: str | os.PathLike) -> str:
    """What is wrong with a file a block-decoding reader (csv) found not UTF-8: its first such line."""
    try:
        for _ in numbered_lines(path):
            pass
    except NotUtf8 as exc:
        return str(exc)
    return f"{os.fspath(path)}: not UTF-8 text"
