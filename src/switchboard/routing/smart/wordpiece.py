"""A small pure-Python WordPiece tokenizer (BERT uncased rules) for static embeddings.

The semantic features look up one vector per WordPiece token, so prompts must be split
the way MiniLM's own tokenizer splits them. The Hugging Face tokenizer would add a heavy
dependency to the hot path; this one is a regex, a per-word cache and, for words not
seen before, greedy longest-match-first over the vocabulary, which is what BERT does.
Differences from the reference (control-character cleaning, CJK characters inside a
run of letters) only touch rare inputs and cost a little accuracy, never a failure.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# BERT splits on whitespace and treats every punctuation character (underscore included)
# as a token of its own.
_WORD = re.compile(r"[^\W_]+|[^\w\s]|_")
_MAX_WORD_CHARS = 100
_CACHE_LIMIT = 200_000


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


class WordPiece:
    """Maps text to WordPiece ids of a BERT vocabulary (one token string per id)."""

    def __init__(self, vocab: Sequence[str], unk: str = "[UNK]") -> None:
        self.vocab = list(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.unk_id = self.index.get(unk, 0)
        self._max_piece = max((len(t) for t in self.vocab), default=1)
        # word -> ids; bounded so adversarial traffic cannot grow it without limit
        self._cache: dict[str, tuple[int, ...]] = {}

    def words(self, text: str) -> list[str]:
        """Lower-cased, accent-stripped words and punctuation marks, BERT's basic split."""
        text = text.lower()
        if not text.isascii():
            text = _strip_accents(text)
        return _WORD.findall(text)

    def word_ids(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first WordPiece ids of one word ([UNK] if it cannot be split)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        ids = self._split(word)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def _split(self, word: str) -> tuple[int, ...]:
        if len(word) > _MAX_WORD_CHARS:
            return (self.unk_id,)
        index = self.index
        out: list[int] = []
        start = 0
        while start < len(word):
            end = min(len(word), start + self._max_piece)
            found = None
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = index.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return (self.unk_id,)
            out.append(found)
            start = end
        return tuple(out)

    def ids(self, text: str) -> list[int]:
        """All WordPiece ids of ``text`` (no [CLS]/[SEP])."""
        out: list[int] = []
        get = self._cache.get
        for w in self.words(text):
            ids = get(w)
            out.extend(ids if ids is not None else self.word_ids(w))
        return out
