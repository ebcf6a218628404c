"""Scoring routers: score(prompt) = probability that the strong model is needed.

Precisely, a learned router estimates RouteLLM's *strong win rate*: P(strong better) +
P(tie) / 2. Routing to the strong model when ``score >= threshold`` then sends the
prompts with the largest expected quality gain first.

Routers are saved as one compressed ``.npz`` file (no pickle, so loading a file cannot
run code) and are loaded lazily; the shipped default lives in ``switchboard/data/routers``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .answer import VERIFIER_STAT_NAMES, verifier_inputs
from .features import DENSE_NAMES, Vocabulary, dense_stats, terms, tokenize
from .metrics import cpt
from .options import OPTION_NAMES, option_features
from .structure import STRUCTURE_NAMES, structure_features

if TYPE_CHECKING:
    from .dataset import Example

FORMAT_VERSION = 1
DEFAULT_ROUTER_PATH = Path(__file__).resolve().parents[2] / "data" / "routers" / "default.npz"

#: Strong shares at which a router stores its training-score quantile, so serving can
#: turn an operator's "at most 30% strong calls" into a threshold without any data.
SHARE_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


class RouterFormatError(ValueError):
    """A router file is missing, of an unknown kind, or of an unsupported version."""


class ScoringRouter:
    """Base class: a named scorer with a stored default threshold.

    ``default_threshold`` routes about ``default_share`` (50% unless trained otherwise) of
    the training prompts to the strong model; ``threshold_for_share`` gives the threshold
    for another share from quantiles stored at training time. ``quality_pgr`` is the PGR
    (share of the weak-to-strong quality gap recovered) the router reached at each share on
    examples held out from its fitting, so ``share_for_quality`` turns a quality target
    into a share.
    """

    name: str = "router"
    default_threshold: float = 0.5

    def __init__(self, name: str, default_threshold: float = 0.5, share_thresholds: dict[float, float] | None = None,
                 meta: dict[str, Any] | None = None, quality_pgr: dict[float, float] | None = None) -> None:
        self.name = name
        self.default_threshold = float(default_threshold)
        self.share_thresholds = dict(share_thresholds or {})
        self.quality_pgr = dict(quality_pgr or {})
        self.meta = dict(meta or {})

    def score(self, text: str) -> float:
        raise NotImplementedError

    def score_many(self, texts: Sequence[str]) -> np.ndarray:
        return np.fromiter((self.score(t) for t in texts), dtype=float, count=len(texts))

    def score_example(self, example: Example) -> float:
        """Score a recorded example (its prompt; an answer verifier also reads the weak answer)."""
        return self.score(example.prompt)

    def score_examples(self, examples: Sequence[Example]) -> np.ndarray:
        return np.fromiter((self.score_example(e) for e in examples), dtype=float, count=len(examples))

    def threshold_for_share(self, share: float) -> float:
        """Threshold sending about ``share`` of training-like traffic to the strong model."""
        if share <= 0:
            return math.inf
        if share >= 1:
            return -math.inf
        if not self.share_thresholds:
            raise ValueError(f"router {self.name!r} has no stored share thresholds; use calibrate_threshold")
        grid = sorted(self.share_thresholds)
        values = [self.share_thresholds[s] for s in grid]
        return float(np.interp(share, grid, values))

    def share_for_quality(self, target: float) -> float:
        """Smallest strong share whose held-out PGR reached ``target`` (1.0 if it never did)."""
        if target <= 0:
            return 0.0
        if not self.quality_pgr:
            raise ValueError(f"router {self.name!r} has no stored quality curve; retrain it with this version "
                             "to use a quality target")
        grid = sorted(self.quality_pgr)
        shares = np.array([0.0, *grid, 1.0])
        pgr = np.maximum.accumulate([0.0, *(self.quality_pgr[s] for s in grid), 1.0])
        return cpt(shares, pgr, target)

    def route_strong(self, text: str, threshold: float | None = None) -> bool:
        """True if the prompt should go to the strong model."""
        return self.score(text) >= (self.default_threshold if threshold is None else threshold)

    def _common_arrays(self, kind: str) -> dict[str, np.ndarray]:
        grid = sorted(self.share_thresholds)
        return {
            "kind": np.array(kind),
            "format_version": np.array(FORMAT_VERSION),
            "name": np.array(self.name),
            "default_threshold": np.array(self.default_threshold),
            "share_grid": np.array(grid, dtype=float),
            "share_values": np.array([self.share_thresholds[s] for s in grid], dtype=float),
            "meta": np.array(json.dumps(self.meta, sort_keys=True)),
            "quality_grid": np.array(sorted(self.quality_pgr), dtype=float),
            "quality_values": np.array([self.quality_pgr[s] for s in sorted(self.quality_pgr)], dtype=float),
        }

    def save(self, path: str | os.PathLike) -> None:
        raise NotImplementedError


class LinearRouter(ScoringRouter):
    """Logistic model over TF-IDF word uni/bi-grams and standardised shape statistics."""

    def __init__(self, name: str, vocab: Vocabulary, sparse_w: np.ndarray, dense_w: np.ndarray, bias: float,
                 dense_mean: np.ndarray, dense_std: np.ndarray, default_threshold: float = 0.5,
                 share_thresholds: dict[float, float] | None = None, meta: dict[str, Any] | None = None,
                 quality_pgr: dict[float, float] | None = None) -> None:
        super().__init__(name, default_threshold, share_thresholds, meta, quality_pgr)
        self.vocab = vocab
        self.sparse_w = np.asarray(sparse_w, dtype=np.float32)
        self.dense_w = np.asarray(dense_w, dtype=float)
        self.bias = float(bias)
        self.dense_mean = np.asarray(dense_mean, dtype=float)
        self.dense_std = np.asarray(dense_std, dtype=float)
        # Pre-folded for the hot path: z_sparse = sum(w*idf) / sqrt(sum(idf^2)).
        self._wi = (self.sparse_w * vocab.idf).astype(np.float64)
        self._idf2 = (vocab.idf.astype(np.float64)) ** 2
        self._dense_scale = (self.dense_w / self.dense_std).tolist()
        self._dense_offset = float(self.bias - np.sum(self.dense_w * self.dense_mean / self.dense_std))

    def logit(self, text: str) -> float:
        tokens = tokenize(text)
        cols = self.vocab.columns(terms(tokens))
        z = self._dense_offset
        if cols:
            z += float(self._wi[cols].sum() / math.sqrt(self._idf2[cols].sum()))
        for a, s in zip(self._dense_scale, dense_stats(text, tokens)):
            z += a * s
        return z

    def score(self, text: str) -> float:
        z = self.logit(text)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def save(self, path: str | os.PathLike) -> None:
        arrays = self._common_arrays("linear")
        arrays.update(
            terms=np.array(self.vocab.terms, dtype=str),
            idf=self.vocab.idf.astype(np.float32),
            sparse_w=self.sparse_w.astype(np.float32),
            dense_w=self.dense_w,
            bias=np.array(self.bias),
            dense_mean=self.dense_mean,
            dense_std=self.dense_std,
            dense_names=np.array(DENSE_NAMES, dtype=str),
        )
        _write_npz(path, arrays)


class GainRouter(ScoringRouter):
    """Two logistic heads, P(strong answers well) and P(weak answers well), over shared
    features: TF-IDF word uni/bi-grams, shape statistics, the option geometry of a
    multiple-choice prompt (``options.py``) and, optionally, structure features
    (``structure.py``) and a static MiniLM embedding (``embedding.py``). The
    score is the expected strong win rate ``0.5 + (p_strong - p_weak) / 2``, in [0, 1]
    like the single-head router's.

    Why two heads: a tie label (0.5) hides whether both models were right or both wrong;
    predicting each model's correctness separately keeps that information, and the
    difference of the two probabilities is exactly the expected quality gain that the
    PGR curve rewards.
    """

    def __init__(self, name: str, vocab: Vocabulary, sparse_w: np.ndarray, dense_w: np.ndarray, bias: np.ndarray,
                 dense_mean: np.ndarray, dense_std: np.ndarray, embedding_name: str | None = None,
                 token_weights: np.ndarray | None = None, default_threshold: float = 0.5,
                 share_thresholds: dict[float, float] | None = None, meta: dict[str, Any] | None = None,
                 structure: bool = False, quality_pgr: dict[float, float] | None = None,
                 options: bool = False) -> None:
        super().__init__(name, default_threshold, share_thresholds, meta, quality_pgr)
        self.vocab = vocab
        self.structure = bool(structure)
        self.options = bool(options)
        self.sparse_w = np.asarray(sparse_w, dtype=np.float32).reshape(len(vocab.terms), 2)
        self.dense_w = np.asarray(dense_w, dtype=float).reshape(-1, 2)
        self.bias = np.asarray(bias, dtype=float).reshape(2)
        self.dense_mean = np.asarray(dense_mean, dtype=float)
        self.dense_std = np.asarray(dense_std, dtype=float)
        self.embedding_name = embedding_name or None
        self.embedding = None  # appends the prompt's vector
        self.table = None  # the static table, for the prompt's vector and/or the option features
        n_stats = len(self.stat_names())
        if self.embedding_name or self.options:
            from .embedding import DEFAULT_TABLE, load_embedding

            self.table = load_embedding(self.embedding_name or DEFAULT_TABLE, token_weights)
            self.embedding = self.table if self.embedding_name else None
        if self.dense_w.shape[0] != n_stats + (self.embedding.dim if self.embedding else 0):
            raise RouterFormatError(f"router {name!r}: dense weights do not match its features")
        # Pre-folded for the hot path: standardisation goes into the weights and the bias.
        self._wi = (self.sparse_w.astype(np.float64) * vocab.idf.astype(np.float64)[:, None])
        self._idf2 = vocab.idf.astype(np.float64) ** 2
        scaled = self.dense_w / self.dense_std[:, None]
        self._offset = self.bias - self.dense_mean @ scaled
        self._stats_w = scaled[:n_stats]
        self._emb_w = scaled[n_stats:]

    def logits(self, text: str) -> np.ndarray:
        """The two heads' logits (strong, weak)."""
        tokens = tokenize(text)
        stats = dense_stats(text, tokens)
        if self.structure:
            stats += structure_features(text, tokens)
        if self.table is not None and self.options:
            stats += option_features(text, self.table)
        z = self._linear(terms(tokens), stats)
        if self.embedding is not None:
            z = z + self.embedding.embed(text) @ self._emb_w
        return z

    def _linear(self, term_set: set[str], stats: list[float]) -> np.ndarray:
        cols = self.vocab.columns(term_set)
        z = self._offset + np.asarray(stats) @ self._stats_w
        if cols:
            z = z + self._wi[cols].sum(axis=0) / math.sqrt(self._idf2[cols].sum())
        return z

    def stat_names(self) -> tuple[str, ...]:
        """Names of the dense statistics in weight order (the embedding follows them)."""
        return DENSE_NAMES + (STRUCTURE_NAMES if self.structure else ()) + (OPTION_NAMES if self.options else ())

    def score(self, text: str) -> float:
        return _gain(self.logits(text))

    def _head_arrays(self, kind: str) -> dict[str, np.ndarray]:
        arrays = self._common_arrays(kind)
        arrays.update(
            terms=np.array(self.vocab.terms, dtype=str),
            idf=self.vocab.idf.astype(np.float32),
            sparse_w=self.sparse_w.astype(np.float32),
            dense_w=self.dense_w,
            bias=self.bias,
            dense_mean=self.dense_mean,
            dense_std=self.dense_std,
            dense_names=np.array(self.stat_names(), dtype=str),
        )
        return arrays

    def save(self, path: str | os.PathLike) -> None:
        arrays = self._head_arrays("gain")
        arrays.update(structure=np.array(self.structure), embedding_name=np.array(self.embedding_name or ""),
                      options=np.array(self.options))
        if self.table is not None:
            arrays["token_weights"] = self.table.weights.astype(np.float32)
        _write_npz(path, arrays)


class VerifierRouter(GainRouter):
    """The cascade's learned check: scores a prompt *and the weak model's answer to it*.

    The same two heads as GainRouter (strong correct, weak correct) over the words of the
    prompt and of the answer (``answer.verifier_inputs``) and the answer's checks
    (``answer.ANSWER_NAMES``: arithmetic that does not hold, no final answer, unused
    quantities, hedging). A score at or above the threshold means "escalate: the strong
    model is likely to do better than this answer". It needs the answer, so it serves
    only in cascade mode, never as a prompt-only router.
    """

    def __init__(self, name: str, vocab: Vocabulary, sparse_w: np.ndarray, dense_w: np.ndarray, bias: np.ndarray,
                 dense_mean: np.ndarray, dense_std: np.ndarray, default_threshold: float = 0.5,
                 share_thresholds: dict[float, float] | None = None, meta: dict[str, Any] | None = None,
                 quality_pgr: dict[float, float] | None = None) -> None:
        super().__init__(name, vocab, sparse_w, dense_w, bias, dense_mean, dense_std, None, None, default_threshold,
                         share_thresholds, meta, quality_pgr=quality_pgr)

    def stat_names(self) -> tuple[str, ...]:
        return VERIFIER_STAT_NAMES

    def score(self, text: str) -> float:
        raise TypeError(f"{self.name!r} is an answer verifier: it scores a prompt with the weak model's answer "
                        "(score_answer), so it serves only in cascade mode")

    def score_answer(self, prompt: str, answer: str) -> float:
        """Expected strong win rate over this weak answer, in [0, 1]: high means escalate."""
        return _gain(self._linear(*verifier_inputs(prompt, answer)))

    def score_example(self, example: Example) -> float:
        if example.weak_answer is None:
            raise ValueError(f"{self.name!r} is an answer verifier and the data has no weak-model answers")
        return self.score_answer(example.prompt, example.weak_answer)

    def save(self, path: str | os.PathLike) -> None:
        _write_npz(path, self._head_arrays("verifier"))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def _gain(z: np.ndarray) -> float:
    zs, zw = z.tolist()
    return 0.5 + 0.5 * (_sigmoid(zs) - _sigmoid(zw))


class RandomRouter(ScoringRouter):
    """Baseline: a uniform pseudo-random score per prompt, stable for the same prompt and
    seed (so retries of one request route the same way)."""

    def __init__(self, seed: int = 0, name: str = "random") -> None:
        super().__init__(name, 0.5, {s: 1.0 - s for s in SHARE_GRID}, {"seed": seed}, {s: s for s in SHARE_GRID})
        self.seed = int(seed)
        self._key = str(self.seed).encode()

    def score(self, text: str) -> float:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=self._key).digest()
        return int.from_bytes(digest, "big") / 2.0**64

    def save(self, path: str | os.PathLike) -> None:
        arrays = self._common_arrays("random")
        arrays["seed"] = np.array(self.seed)
        _write_npz(path, arrays)


def _write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failed write (say, `path` is a directory): no leftover


def load_router(path: str | os.PathLike | None = None) -> ScoringRouter:
    """Load a saved router; ``None`` loads the default shipped with the package."""
    path = Path(path) if path is not None else DEFAULT_ROUTER_PATH
    if not path.exists():
        raise RouterFormatError(f"no router file at {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):  # empty, truncated, or not a .npz at all
        raise RouterFormatError(f"{path} is not a router file (from `switchboard router train`)") from None
    if not isinstance(z, np.lib.npyio.NpzFile) or "kind" not in z:
        raise RouterFormatError(f"{path} is not a router file (from `switchboard router train`)")
    with z:
        try:
            return _router_from_arrays(z, path)
        except RouterFormatError:
            raise
        except (KeyError, ValueError, TypeError) as exc:  # an array missing, or of the wrong shape or type
            detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise RouterFormatError(f"{path} is not a whole router file ({detail})") from None


def _router_from_arrays(z: Any, path: Path) -> ScoringRouter:
    """The router that the arrays of an opened router file describe."""
    kind = str(z["kind"])
    version = int(z["format_version"])
    if version != FORMAT_VERSION:
        raise RouterFormatError(f"{path}: router format {version} is not supported (want {FORMAT_VERSION})")
    meta = json.loads(str(z["meta"]))
    if not isinstance(meta, dict):
        raise TypeError("its meta is not a JSON object")
    common = {
        "default_threshold": float(z["default_threshold"]),
        "share_thresholds": dict(zip(z["share_grid"].tolist(), z["share_values"].tolist())),
        "meta": meta,
        "quality_pgr": dict(zip(z["quality_grid"].tolist(), z["quality_values"].tolist()))
        if "quality_grid" in z else None,
    }
    if kind == "linear":
        vocab = Vocabulary(z["terms"].tolist(), z["idf"])
        return LinearRouter(str(z["name"]), vocab, z["sparse_w"], z["dense_w"], float(z["bias"]),
                            z["dense_mean"], z["dense_std"], **common)
    if kind == "gain":
        vocab = Vocabulary(z["terms"].tolist(), z["idf"])
        emb_name = str(z["embedding_name"]) or None
        weights = z["token_weights"].astype(np.float32) if "token_weights" in z else None
        try:
            return GainRouter(str(z["name"]), vocab, z["sparse_w"], z["dense_w"], z["bias"], z["dense_mean"],
                              z["dense_std"], emb_name, weights, **common,
                              structure="structure" in z and bool(z["structure"]),
                              options="options" in z and bool(z["options"]))
        except FileNotFoundError as exc:
            raise RouterFormatError(f"{path}: {exc}") from exc
    if kind == "verifier":
        return VerifierRouter(str(z["name"]), Vocabulary(z["terms"].tolist(), z["idf"]), z["sparse_w"],
                              z["dense_w"], z["bias"], z["dense_mean"], z["dense_std"], **common)
    if kind == "random":
        return RandomRouter(int(z["seed"]), str(z["name"]))
    raise RouterFormatError(f"{path}: unknown router kind {kind!r}")
