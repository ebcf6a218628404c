"""A table of int64 words that the forked workers of one host share, and the lock that guards it.

`switchboard serve --workers N` creates each table in the parent before forking: an
anonymous shared mapping is inherited by every worker, including one restarted later.
Changes happen under an exclusive POSIX record lock (`lockf`) on a file only this table
uses; the kernel drops a record lock when its holder dies, so a crashed worker cannot
wedge the others. Work under the lock is a few microseconds of arithmetic (no I/O, no
await), so it is taken on the event loop.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

EMPTY, FREED = 0, -1  # keys of a table entry never used and of a freed one


def key64(text: str) -> int:
    """A 64-bit key for `text`, never `EMPTY` or `FREED`."""
    k = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)
    return 1 if k in (EMPTY, FREED) else k


class SharedWords:
    """`words` int64 words of shared memory (`q`, all zero at first) and `locked` to change them."""

    def __init__(self, words: int, name: str) -> None:
        self._map = mmap.mmap(-1, words * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self.q = memoryview(self._map).cast("q")
        self._lock_file = tempfile.TemporaryFile(prefix=f"switchboard-{name}-")
        self._fd = self._lock_file.fileno()

    def locked(self, work: Callable[..., _T], *args: Any) -> _T:
        """`work(*args)` under the table's lock."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            return work(*args)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
