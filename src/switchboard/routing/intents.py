"""Semantic-intent routes: example utterances per route, matched by embedding similarity.

The embedding is a hashed bag of words, word pairs and character trigrams,
L2-normalised: no model download, microseconds per prompt, and robust to small
rewordings ("write a python function" ~ "write me a function in Python").
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
DIMS = 1 << 14


def _index(token: str) -> int:
    return zlib.crc32(token.encode()) & (DIMS - 1)


def embed(text: str) -> np.ndarray:
    """A unit vector for `text`."""
    words = _WORD.findall(text.lower()[:20000])
    vec = np.zeros(DIMS, dtype=np.float32)
    for w in words:
        vec[_index("w:" + w)] += 1.0
        padded = f" {w} "
        for i in range(len(padded) - 2):
            vec[_index("c:" + padded[i:i + 3])] += 0.3
    for a, b in zip(words, words[1:]):
        vec[_index(f"b:{a} {b}")] += 0.7
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm else vec


@dataclass
class IntentRoute:
    name: str
    model: str
    examples: list[str]
    threshold: float = 0.55
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, DIMS), dtype=np.float32), repr=False)

    def prepare(self) -> None:
        self.vectors = np.stack([embed(e) for e in self.examples]) if self.examples else self.vectors


def match(routes: list[IntentRoute], text: str) -> tuple[IntentRoute, float] | None:
    """The route whose closest example is most similar to `text`, if above its threshold."""
    if not routes:
        return None
    v = embed(text)
    best: tuple[IntentRoute, float] | None = None
    for route in routes:
        if not len(route.vectors):
            continue
        sim = float(np.max(route.vectors @ v))
        if sim >= route.threshold and (best is None or sim > best[1]):
            best = (route, sim)
    return best
