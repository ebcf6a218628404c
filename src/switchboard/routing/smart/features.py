"""Prompt features that cost well under a millisecond: TF-IDF word n-grams plus a few
shape statistics.

Why not a transformer at run time: the routing decision sits on every request's hot path
and must take under 1 ms on one core; a MiniLM forward pass on 500 tokens takes tens of
milliseconds. A sparse linear model over words captures most of what predicts "the weak
model will struggle" on this data (topic, question type, amount of arithmetic), and its
cost is a regex, a few hundred dict look-ups and one small dot product.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NO_DIGITS = str.maketrans("", "", "0123456789")
_NO_UPPER = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

#: Names of the dense shape statistics, in vector order (kept in the saved model).
DENSE_NAMES = (
    "log_chars",
    "log_tokens",
    "log_numbers",
    "log_lines",
    "log_questions",
    "log_max_number",
    "digit_share",
    "upper_share",
)


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (punctuation such as $ % = | carries signal)."""
    return _TOKEN.findall(text.lower())


def terms(tokens: Sequence[str]) -> set[str]:
    """The unique unigrams and bigrams of a token list (bigrams joined by one space)."""
    out = set(tokens)
    out.update(a + " " + b for a, b in zip(tokens, tokens[1:]))
    return out


def dense_stats(text: str, tokens: Sequence[str]) -> list[float]:
    """Shape statistics in DENSE_NAMES order: length, arithmetic load, layout."""
    numbers = _NUMBER.findall(text)
    biggest = 0.0
    for num in numbers:
        try:
            biggest = max(biggest, float(num.replace(",", "")))
        except ValueError:
            pass
    n = max(len(text), 1)
    if text.isascii():  # what deleting A-Z / 0-9 removes is what isupper / isdigit count: ~10x faster
        digits = len(text) - len(text.translate(_NO_DIGITS)) if numbers else 0
        upper = len(text) - len(text.translate(_NO_UPPER))
    else:
        digits = sum(map(str.isdigit, text)) if numbers else 0
        upper = sum(map(str.isupper, text))
    return [
        math.log1p(len(text)),
        math.log1p(len(tokens)),
        math.log1p(len(numbers)),
        math.log1p(text.count("\n")),
        math.log1p(text.count("?")),
        math.log1p(min(biggest, 1e12)),
        digits / n,
        upper / n,
    ]


class Vocabulary:
    """Maps n-gram terms to columns and their IDF weights, fitted on training prompts only."""

    def __init__(self, terms_: Sequence[str], idf: np.ndarray) -> None:
        self.terms = list(terms_)
        self.idf = np.asarray(idf, dtype=np.float32)
        self.index = {t: i for i, t in enumerate(self.terms)}

    @classmethod
    def fit(cls, term_sets: Sequence[set[str]], min_df: int = 3, max_terms: int = 40000) -> Vocabulary:
        """Keep terms seen in at least ``min_df`` prompts, the ``max_terms`` most frequent."""
        df: Counter[str] = Counter()
        for ts in term_sets:
            df.update(ts)
        n = len(term_sets)
        # Ties at the cut-off are broken by the term itself: set iteration order changes with the
        # process's hash seed, and a vocabulary must not.
        ranked = sorted(df.items(), key=lambda item: (-item[1], item[0]))
        kept = [t for t, c in ranked if c >= min_df and c < n][:max_terms]
        kept.sort()
        idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in kept], dtype=np.float32)
        return cls(kept, idf)

    def columns(self, ts: set[str]) -> list[int]:
        """Column indices of the known terms in ``ts``."""
        get = self.index.get
        return [i for i in map(get, ts) if i is not None]


def sparse_matrix(vocab: Vocabulary, term_sets: Sequence[set[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays (indptr, indices, data) of L2-normalised TF-IDF presence vectors."""
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    idf = vocab.idf
    for ts in term_sets:
        cols = vocab.columns(ts)
        if cols:
            w = idf[cols]
            w = w / np.sqrt(np.sum(w * w))
            indices.extend(cols)
            data.extend(w.tolist())
        indptr.append(len(indices))
    return np.asarray(indptr, np.int64), np.asarray(indices, np.int64), np.asarray(data, np.float64)
