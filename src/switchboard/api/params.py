"""Checks for the text, numbers and timestamps an operator sends the admin and dashboard APIs, shared so both
answer alike.

Every backend must answer the same: SQLite stores a U+0000 that Postgres
refuses with an error, so control characters are refused with a 400 before any
text reaches the database.
"""

from __future__ import annotations

import math

from switchboard.errors import InvalidRequest

_LINE_BREAKS = frozenset("\n\r\t")


def has_control(text: str, *, line_breaks: bool = False) -> bool:
    """Whether `text` holds a control character (U+0000 to U+001F, U+007F); tabs and newlines allowed if asked."""
    return any((ord(c) < 32 or c == "\x7f") and not (line_breaks and c in _LINE_BREAKS) for c in text)


def check_text(value: str, name: str, *, limit: int = 500, line_breaks: bool = False) -> str:
    """`value`, or a 400 naming the parameter `name` when it is too long or holds a control character."""
    if len(value) > limit or has_control(value, line_breaks=line_breaks):
        raise InvalidRequest(f"'{name}' must be printable text of at most {limit} characters "
                             "(no U+0000 or other control characters).", param=name)
    return value


def text_param(params: dict[str, str], name: str, *, limit: int = 500) -> str | None:
    """A free-text query parameter (absent or empty: None), checked like `check_text`."""
    value = params.get(name) or None
    return None if value is None else check_text(value, name, limit=limit)


def timestamp_param(params: dict[str, str], name: str) -> float | None:
    """A Unix timestamp in seconds (absent or empty: None), or a 400."""
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or abs(number) > 1e11:
        raise InvalidRequest(f"'{name}' must be a Unix timestamp in seconds; got {value[:40]!r}.", param=name)
    return number


def check_order(since: float | None, until: float | None) -> None:
    """A 400 unless `since` is before `until` (when both are given): an empty range is a mistake, not a query."""
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("'since' must be before 'until'.", param="since")


def int_param(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter (absent or empty: `default`), or a 400 outside lo..hi: never silently clamped."""
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer; got {value[:40]!r}.", param=name) from None
    if not lo <= n <= hi:
        raise InvalidRequest(f"'{name}' must be between {lo} and {hi}.", param=name)
    return n
