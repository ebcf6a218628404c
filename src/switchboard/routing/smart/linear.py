"""Logistic regression with soft labels on sparse + dense features, in plain numpy.

Training-time only. Written here rather than taken from scikit-learn to keep the
package's dependencies at numpy: the model is small (tens of thousands of weights) and
full-batch Adam with early stopping on a held-out slice converges in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Design:
    """A design matrix: CSR sparse part plus a dense block (already standardised)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    dense: np.ndarray
    n_sparse: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1


@dataclass
class LinearWeights:
    sparse: np.ndarray
    dense: np.ndarray
    bias: float


def _logits(x: Design, w: LinearWeights, row_of: np.ndarray) -> np.ndarray:
    z = np.bincount(row_of, weights=x.data * w.sparse[x.indices], minlength=x.n_rows)
    return z + x.dense @ w.dense + w.bias


def predict_logits(x: Design, w: LinearWeights) -> np.ndarray:
    """The model's logit for every row of ``x``."""
    return _logits(x, w, np.repeat(np.arange(x.n_rows), np.diff(x.indptr)))


def _loss(z: np.ndarray, y: np.ndarray) -> float:
    # Soft-label cross-entropy, numerically stable.
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_logistic(
    x: Design,
    y: np.ndarray,
    l2: float = 1e-4,
    steps: int = 400,
    lr: float = 0.05,
    valid: tuple[Design, np.ndarray] | None = None,
    eval_every: int = 10,
    patience: int = 100,
) -> tuple[LinearWeights, int, float]:
    """Fit by full-batch Adam; with ``valid``, return the weights of the step with the
    lowest validation loss (early stopping, giving up after ``patience`` steps without
    improvement), that step count and that loss."""
    n = x.n_rows
    row_of = np.repeat(np.arange(n), np.diff(x.indptr))
    prior = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    w = LinearWeights(np.zeros(x.n_sparse), np.zeros(x.dense.shape[1]), float(np.log(prior / (1 - prior))))
    params = [w.sparse, w.dense]
    m = [np.zeros_like(p) for p in params] + [0.0]
    v = [np.zeros_like(p) for p in params] + [0.0]
    b1, b2, eps = 0.9, 0.999, 1e-8
    best = (np.inf, w, 0)
    if valid is not None:
        vrow = np.repeat(np.arange(valid[0].n_rows), np.diff(valid[0].indptr))
    for t in range(1, steps + 1):
        r = (1.0 / (1.0 + np.exp(-_logits(x, w, row_of))) - y) / n
        grads = [
            np.bincount(x.indices, weights=x.data * r[row_of], minlength=x.n_sparse) + l2 * w.sparse,
            x.dense.T @ r + l2 * w.dense,
            float(r.sum()),
        ]
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            step = lr * (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + eps)
            if i == 0:
                w.sparse -= step
            elif i == 1:
                w.dense -= step
            else:
                w.bias -= float(step)
        if valid is not None and (t % eval_every == 0 or t == steps):
            loss = _loss(_logits(valid[0], w, vrow), valid[1])
            if loss < best[0]:
                best = (loss, LinearWeights(w.sparse.copy(), w.dense.copy(), w.bias), t)
            elif t - best[2] >= patience:
                break
    if valid is not None:
        return best[1], best[2], float(best[0])
    return w, steps, float("nan")
