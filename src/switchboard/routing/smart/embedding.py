"""Static sentence embeddings distilled from MiniLM: one stored vector per WordPiece token.

A MiniLM forward pass over 500 tokens costs tens of milliseconds; the routing budget is
one. Following model2vec, every WordPiece token of MiniLM's vocabulary is run through
the model once, on its own, at build time (``distil.py``); the pooled outputs are reduced
by PCA (fitted on those token vectors only: no prompt text, no labels) and stored as
int8. At run time a prompt's embedding is the IDF-weighted mean of its tokens' vectors:
a regex, a cached dictionary walk and one small matrix product.

The IDF weights are fitted on the training prompts of the router that uses the table,
so cross-validation refits them inside each fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .wordpiece import WordPiece


class StaticEmbedding:
    """WordPiece vocabulary + int8 token table (per-dimension scale) + per-token weights."""

    def __init__(self, vocab: Sequence[str], table_q: np.ndarray, scale: np.ndarray,
                 weights: np.ndarray | None = None) -> None:
        self.tokenizer = WordPiece(vocab)
        self.table_q = np.asarray(table_q, dtype=np.int8)
        self.scale = np.asarray(scale, dtype=np.float32)
        n = len(self.tokenizer.vocab)
        if self.table_q.shape[0] != n:
            raise ValueError("token table and vocabulary sizes differ")
        self.weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        self._prepare()

    def _prepare(self) -> None:
        # Fold weights into the table once (float32), so a prompt costs one gather + sum.
        self._weighted = self.table_q.astype(np.float32) * self.scale[None, :] * self.weights[:, None]

    @property
    def dim(self) -> int:
        return int(self.table_q.shape[1])

    @classmethod
    def from_float(cls, vocab: Sequence[str], table: np.ndarray) -> StaticEmbedding:
        """Quantise a float token table to int8 with one scale per dimension."""
        table = np.asarray(table, dtype=np.float32)
        scale = np.maximum(np.abs(table).max(axis=0), 1e-12) / 127.0
        q = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
        return cls(vocab, q, scale)

    def fit_weights(self, texts: Sequence[str]) -> None:
        """Smoothed IDF of each token over ``texts`` (training prompts only)."""
        n_vocab = len(self.tokenizer.vocab)
        df = np.zeros(n_vocab)
        for t in texts:
            ids = self.tokenizer.ids(t)
            if ids:
                df[np.unique(ids)] += 1
        n = len(texts)
        self.weights = (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
        self._prepare()

    def embed(self, text: str) -> np.ndarray:
        """The prompt's weighted mean token vector (zeros for a prompt with no tokens)."""
        return self.embed_ids(self.tokenizer.ids(text))

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        """The weighted mean vector of already tokenised text."""
        if not ids:
            return np.zeros(self.dim, np.float32)
        total = float(self.weights[ids].sum())
        return self._weighted[ids].sum(axis=0) / (total if total > 0 else 1.0)

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.embed(t) for t in texts], dtype=np.float64).reshape(len(texts), self.dim)


def pca_reduce(table: np.ndarray, dim: int) -> np.ndarray:
    """Project token vectors on their top ``dim`` principal components (fitted on the
    table itself), scaled so the first component has unit variance."""
    x = np.asarray(table, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[:dim].T
    return (out / (s[0] / math.sqrt(len(x)))).astype(np.float32)


#: Where named static tables (built by ``distil.py``) ship with the package.
TABLE_DIR = Path(__file__).resolve().parents[2] / "data" / "routers"
DEFAULT_TABLE = "minilm-l6-static64"
_tables: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}


def table_path(name: str) -> Path:
    return TABLE_DIR / f"{name}.npz"


def load_table(name: str = DEFAULT_TABLE) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(vocabulary, int8 table, per-dimension scale) of a shipped static table, read once."""
    cached = _tables.get(name)
    if cached is None:
        path = table_path(name)
        if not path.exists():
            raise FileNotFoundError(f"no static embedding table {name!r} at {path} (build it with "
                                    f"python -m switchboard.routing.smart.distil)")
        with np.load(path, allow_pickle=False) as z:
            cached = (z["vocab"].tolist(), z["table_q"], z["scale"])
        _tables[name] = cached
    return cached


def load_embedding(name: str = DEFAULT_TABLE, weights: np.ndarray | None = None) -> StaticEmbedding:
    vocab, table_q, scale = load_table(name)
    return StaticEmbedding(vocab, table_q, scale, weights)
