"""Argument types for the command line: a bad value is argparse's one-line usage error, never a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)
U = TypeVar("U")


def ranged(convert: Callable[[str], T], ok: Callable[[T], bool], what: str) -> Callable[[str], T]:
    """An argparse type: `convert` the text, and refuse it unless `ok`, saying it is not `what`."""
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


port = ranged(int, lambda v: 0 <= v <= 65535, "a port (0 to 65535)")
positive_int = ranged(int, lambda v: v >= 1, "a whole number of at least 1")
non_negative_int = ranged(int, lambda v: v >= 0, "a whole number of at least 0")
fold_count = ranged(int, lambda v: v >= 2, "a number of folds (a whole number of at least 2)")
share = ranged(float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")
usd = ranged(float, lambda v: math.isfinite(v) and v >= 0, "an amount of US dollars (at least 0)")
signed_usd = ranged(float, math.isfinite, "an amount of US dollars")


def or_none(parse: Callable[[str], U]) -> Callable[[str], U | None]:
    """An argparse type that also takes the word `none` (no limit: null in the admin API)."""
    def parse_or_none(text: str) -> U | None:
        if text.strip().lower() == "none":
            return None
        try:
            return parse(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {parse.__name__} or 'none'") from None

    parse_or_none.__name__ = f"{parse.__name__} or 'none'"
    return parse_or_none


positive_seconds = ranged(float, lambda v: math.isfinite(v) and v > 0, "a number of seconds above 0")


def model_list(text: str) -> list[str] | None:
    """Comma-separated model names, or `*` for every model (null in the admin API)."""
    if text.strip() == "*":
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of model names ('*' for all models)")
    return names
