"""Train a router (GainRouter by default, or the single-head LinearRouter) from routing examples.

Only the training examples are ever seen: the vocabulary, IDF weights, feature
standardisation and the early-stopping point are all fitted inside this function, on a
split of the data it is given, so cross-validation that calls it per fold is leak-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .answer import verifier_inputs
from .dataset import Example
from .embedding import DEFAULT_TABLE, load_embedding
from .evaluate import kfold_assignments
from .features import Vocabulary, dense_stats, sparse_matrix, terms, tokenize
from .linear import Design, LinearWeights, fit_logistic, predict_logits
from .options import option_features
from .metrics import pgr_at
from .router import SHARE_GRID, GainRouter, LinearRouter, ScoringRouter, VerifierRouter
from .structure import structure_features

MIN_EXAMPLES = 10  # fewer cannot fill the validation split that chooses L2 and steps


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the learned router, fixed up front (not tuned on evaluation folds)."""

    min_df: int = 3
    max_terms: int = 40000
    l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    lr: float = 0.01
    max_steps: int = 600
    valid_fraction: float = 0.15
    default_share: float = 0.5
    seed: int = 0
    #: "gain": two heads (strong / weak correctness); "linear": one soft-label head;
    #: "verifier": the cascade's answer verifier (two heads over prompt + weak answer).
    kind: str = "gain"
    #: static embedding table appended to the dense features (gain only); None = without.
    embedding: str | None = None
    #: append the multiple-choice / word-problem structure features (gain only).
    structure: bool = False
    #: append the option-geometry features of multiple-choice prompts (gain only; options.py).
    options: bool = True
    #: folds of the cross-fitting that measures the stored quality curve (PGR per share on
    #: examples each model did not see); 0 stores none (cross-validation's throwaway routers).
    quality_folds: int = 5


def _design(vocab: Vocabulary, term_sets: list[set[str]], dense: np.ndarray) -> Design:
    indptr, indices, data = sparse_matrix(vocab, term_sets)
    return Design(indptr, indices, data, dense, len(vocab.terms))


def train_router(examples: Sequence[Example], name: str | None = None,
                 config: TrainConfig | None = None) -> ScoringRouter:
    """Train the router kind that ``config`` names (default: a two-head GainRouter on
    TF-IDF and shape statistics; ``embedding`` adds the static MiniLM table)."""
    cfg = config or TrainConfig()
    if cfg.kind == "gain":
        return train_gain_router(examples, name or "gain-tfidf", cfg)
    if cfg.kind == "linear":
        return train_linear_router(examples, name or "linear-tfidf", cfg)
    if cfg.kind == "verifier":
        return train_verifier(examples, name or "answer-verifier", cfg)
    raise ValueError(f"unknown router kind {cfg.kind!r}; choose gain, linear or verifier")


def _split(n: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of a seeded shuffle."""
    perm = np.random.default_rng(cfg.seed).permutation(n)
    n_valid = max(1, int(n * cfg.valid_fraction))
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def _choose_and_refit(cfg: TrainConfig, x_fit: Design, x_val: Design, x_all: Design, y: np.ndarray,
                      fit_idx: np.ndarray, valid_idx: np.ndarray) -> tuple[LinearWeights, float, int]:
    """Pick L2 and the step count by validation loss, then refit on all rows with them."""
    trials = []
    for l2 in cfg.l2_grid:
        _, steps, loss = fit_logistic(x_fit, y[fit_idx], l2, cfg.max_steps, cfg.lr, valid=(x_val, y[valid_idx]))
        trials.append((loss, l2, max(steps, 10)))
    _, best_l2, best_steps = min(trials)
    weights, _, _ = fit_logistic(x_all, y, best_l2, best_steps, cfg.lr)
    return weights, best_l2, best_steps


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _cross_fitted(n: int, cfg: TrainConfig, fit_predict: FitPredict) -> np.ndarray | None:
    """Every row's score from a model fitted, with the chosen settings, on the other folds."""
    if cfg.quality_folds < 2 or n < 2 * cfg.quality_folds:
        return None
    fold = kfold_assignments(n, cfg.quality_folds, cfg.seed)
    scores = np.empty(n)
    for k in range(cfg.quality_folds):
        scores[fold == k] = fit_predict(np.flatnonzero(fold != k), np.flatnonzero(fold == k))
    return scores


def _finish(router: ScoringRouter, scores: np.ndarray, cfg: TrainConfig, examples: Sequence[Example],
            held_out: np.ndarray | None) -> ScoringRouter:
    """Store the threshold per strong share, the default threshold and the quality curve
    (PGR per share). Both come from the cross-fitted scores when there are some: a model
    scores its own training prompts more extremely than new ones, so quantiles of the
    in-sample ``scores`` would give the wrong share on new traffic."""
    calibration = scores if held_out is None else held_out
    router.share_thresholds = {s: float(np.quantile(calibration, 1.0 - s)) for s in SHARE_GRID}
    router.default_threshold = router.threshold_for_share(cfg.default_share)
    router.meta["default_share"] = cfg.default_share
    router.meta["calibrated_on"] = "training scores" if held_out is None else f"{cfg.quality_folds}-fold cross-fit"
    curve = None if held_out is None else pgr_at(held_out, [e.strong for e in examples],
                                                  [e.weak for e in examples], SHARE_GRID)
    router.quality_pgr = dict(zip(SHARE_GRID, curve)) if curve is not None else {}
    return router


@dataclass
class _Heads:
    """Two fitted heads (strong correct, weak correct) over shared features."""

    vocab: Vocabulary
    sparse_w: np.ndarray
    dense_w: np.ndarray
    bias: np.ndarray
    dense_mean: np.ndarray
    dense_std: np.ndarray
    token_weights: np.ndarray | None
    chosen: list[dict[str, object]]
    held_out: np.ndarray | None  # cross-fitted expected strong win rate of every example


def _fit_heads(examples: Sequence[Example], term_sets: list[set[str]], stats: np.ndarray, cfg: TrainConfig,
               texts: Sequence[str] | None = None) -> _Heads:
    """Fit both heads. Vocabulary, IDF, the static table's token weights (when ``cfg.embedding`` or
    ``cfg.options``, and ``texts``) and the standardisation are fitted on the given examples only: first on
    the fit part of a seeded split, to choose each head's L2 strength and step count by
    validation loss, then on all of them to refit."""
    fit_idx, valid_idx = _split(len(examples), cfg)
    all_idx = np.arange(len(examples))

    def features(rows: np.ndarray) -> tuple[Vocabulary, np.ndarray, np.ndarray, np.ndarray | None]:
        vocab = Vocabulary.fit([term_sets[i] for i in rows], cfg.min_df, cfg.max_terms)
        dense, token_weights = stats, None
        if (cfg.embedding or cfg.options) and texts is not None:
            table = load_embedding(cfg.embedding or DEFAULT_TABLE)
            table.fit_weights([texts[i] for i in rows])
            blocks = [stats]
            if cfg.options:
                blocks.append(np.array([option_features(t, table) for t in texts], dtype=float))
            if cfg.embedding:
                blocks.append(table.embed_many(texts))
            dense, token_weights = np.hstack(blocks), table.weights
        mean, std = dense[rows].mean(axis=0), dense[rows].std(axis=0) + 1e-6
        return vocab, (dense - mean) / std, np.vstack([mean, std]), token_weights

    def design(vocab: Vocabulary, dense: np.ndarray, rows: np.ndarray) -> Design:
        return _design(vocab, [term_sets[i] for i in rows], dense[rows])

    vocab, dense, _, _ = features(fit_idx)
    x_fit, x_val = design(vocab, dense, fit_idx), design(vocab, dense, valid_idx)
    vocab_all, dense_all, moments, token_weights = features(all_idx)
    x_all = design(vocab_all, dense_all, all_idx)
    heads, targets = [], []  # per head: the refit weights; (labels, L2, steps) for the cross-fit
    names = ("strong", "weak")
    for target in names:
        y = np.array([getattr(e, target) for e in examples], dtype=float)
        weights, l2, steps = _choose_and_refit(cfg, x_fit, x_val, x_all, y, fit_idx, valid_idx)
        heads.append(weights)
        targets.append((y, l2, steps))

    def fit_predict(train_rows: np.ndarray, test_rows: np.ndarray) -> np.ndarray:
        vocab, dense, _, _ = features(train_rows)
        x_train, x_test = design(vocab, dense, train_rows), design(vocab, dense, test_rows)
        zs, zw = (predict_logits(x_test, fit_logistic(x_train, y[train_rows], l2, steps, cfg.lr)[0])
                  for y, l2, steps in targets)
        return 0.5 + 0.5 * (_sigmoid(zs) - _sigmoid(zw))

    return _Heads(vocab_all, np.stack([h.sparse for h in heads], axis=1), np.stack([h.dense for h in heads], axis=1),
                  np.array([h.bias for h in heads]), moments[0], moments[1], token_weights,
                  [{"head": h, "l2": l2, "steps": int(steps)} for h, (_, l2, steps) in zip(names, targets)],
                  _cross_fitted(len(examples), cfg, fit_predict))


def _meta(examples: Sequence[Example], heads: _Heads, cfg: TrainConfig) -> dict[str, object]:
    return {"examples": len(examples), "heads": heads.chosen, "config": dict(cfg.__dict__)}


def train_gain_router(examples: Sequence[Example], name: str = "gain-tfidf",
                      config: TrainConfig | None = None) -> GainRouter:
    """Fit the GainRouter's two heads (strong correct, weak correct) on shared prompt features."""
    cfg = config or TrainConfig()
    if len(examples) < MIN_EXAMPLES:
        raise ValueError(f"need at least {MIN_EXAMPLES} examples to train a router")
    texts = [e.prompt for e in examples]
    tokens = [tokenize(t) for t in texts]
    stats = np.array([dense_stats(t, tk) for t, tk in zip(texts, tokens)], dtype=float)
    if cfg.structure:
        stats = np.hstack([stats, np.array([structure_features(t, tk) for t, tk in zip(texts, tokens)], dtype=float)])
    h = _fit_heads(examples, [terms(t) for t in tokens], stats, cfg, texts)
    router = GainRouter(name, h.vocab, h.sparse_w, h.dense_w, h.bias, h.dense_mean, h.dense_std, cfg.embedding,
                        h.token_weights, meta=_meta(examples, h, cfg), structure=cfg.structure, options=cfg.options)
    return _finish(router, router.score_many(texts), cfg, examples, h.held_out)  # type: ignore[return-value]


def train_verifier(examples: Sequence[Example], name: str = "answer-verifier",
                   config: TrainConfig | None = None) -> VerifierRouter:
    """Fit the cascade's answer verifier on examples that carry the weak model's answer."""
    cfg = config or TrainConfig()
    with_answers = [e for e in examples if e.weak_answer is not None]
    if len(with_answers) < MIN_EXAMPLES:
        raise ValueError(f"an answer verifier needs at least {MIN_EXAMPLES} examples with the weak model's answer "
                         "('weak_answer' in JSONL; the RouteLLM GSM8K responses have them)")
    inputs = [verifier_inputs(e.prompt, e.weak_answer or "") for e in with_answers]
    stats = np.array([s for _, s in inputs], dtype=float)
    h = _fit_heads(with_answers, [t for t, _ in inputs], stats, cfg)
    verifier = VerifierRouter(name, h.vocab, h.sparse_w, h.dense_w, h.bias, h.dense_mean, h.dense_std,
                              meta=_meta(with_answers, h, cfg))
    return _finish(verifier, verifier.score_examples(with_answers), cfg, with_answers,  # type: ignore[return-value]
                   h.held_out)


def train_linear_router(
    examples: Sequence[Example], name: str = "linear-tfidf", config: TrainConfig | None = None
) -> LinearRouter:
    """Fit the vocabulary and a soft-label logistic model. The L2 strength and the number
    of optimisation steps are chosen on a held-out ``valid_fraction`` of the given examples
    (lowest validation loss), then the model is refit on all of them with that choice."""
    cfg = config or TrainConfig()
    if len(examples) < MIN_EXAMPLES:
        raise ValueError(f"need at least {MIN_EXAMPLES} examples to train a router")
    texts = [e.prompt for e in examples]
    y = np.array([e.label for e in examples], dtype=float)
    tokens = [tokenize(t) for t in texts]
    term_sets = [terms(t) for t in tokens]
    raw_dense = np.array([dense_stats(t, tk) for t, tk in zip(texts, tokens)], dtype=float)

    fit_idx, valid_idx = _split(len(examples), cfg)

    def build(rows: np.ndarray) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
        vocab = Vocabulary.fit([term_sets[i] for i in rows], cfg.min_df, cfg.max_terms)
        mean = raw_dense[rows].mean(axis=0)
        std = raw_dense[rows].std(axis=0) + 1e-6
        return vocab, mean, std

    # Early stopping on a held-out slice, with features fitted on the rest only; then all rows.
    vocab, mean, std = build(fit_idx)
    std_dense = (raw_dense - mean) / std
    x_fit = _design(vocab, [term_sets[i] for i in fit_idx], std_dense[fit_idx])
    x_val = _design(vocab, [term_sets[i] for i in valid_idx], std_dense[valid_idx])
    vocab, mean, std = build(np.arange(len(examples)))
    x_all = _design(vocab, term_sets, (raw_dense - mean) / std)
    weights, best_l2, best_steps = _choose_and_refit(cfg, x_fit, x_val, x_all, y, fit_idx, valid_idx)

    def fit_predict(train_rows: np.ndarray, test_rows: np.ndarray) -> np.ndarray:
        vocab, mean, std = build(train_rows)
        dense = (raw_dense - mean) / std
        x_train = _design(vocab, [term_sets[i] for i in train_rows], dense[train_rows])
        x_test = _design(vocab, [term_sets[i] for i in test_rows], dense[test_rows])
        return _sigmoid(predict_logits(x_test, fit_logistic(x_train, y[train_rows], best_l2, best_steps, cfg.lr)[0]))

    router = LinearRouter(name, vocab, weights.sparse, weights.dense, weights.bias, mean, std,
                          meta={"examples": len(examples), "steps": int(best_steps), "l2": best_l2,
                                "config": {k: v for k, v in cfg.__dict__.items()}})
    return _finish(router, router.score_many(texts), cfg, examples,  # type: ignore[return-value]
                   _cross_fitted(len(examples), cfg, fit_predict))
