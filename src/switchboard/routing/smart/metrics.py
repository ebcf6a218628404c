"""Cost-quality metrics for a router: the PGR curve, APGR and CPT.

For a router that sends the share c of prompts with the highest scores to the strong
model, PGR(c) = (quality(c) - weak quality) / (strong quality - weak quality).

The curve is computed exactly at every count of strong calls k = 0..n (no threshold
binning), and prompts with equal scores are treated as one block whose members are
chosen at random, i.e. each contributes the block's mean gain. That makes a constant
score exactly the random router (PGR(c) = c, APGR = 0.5) and keeps the metric
independent of input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class RouterMetrics:
    """Summary of one router's PGR curve; shares are fractions in [0, 1]."""

    apgr: float
    cpt50: float
    cpt80: float
    shares: np.ndarray
    pgr: np.ndarray

    def curve_points(self, points: int = 11) -> list[tuple[float, float]]:
        """The PGR curve sampled at ``points`` evenly spaced strong shares (for reports)."""
        grid = np.linspace(0.0, 1.0, points)
        return [(float(c), float(p)) for c, p in zip(grid, np.interp(grid, self.shares, self.pgr))]


def pgr_curve(scores: Sequence[float], strong: Sequence[float], weak: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Return (shares, pgr) for k = 0..n strong calls, highest scores routed first."""
    s = np.asarray(scores, dtype=float)
    st = np.asarray(strong, dtype=float)
    wk = np.asarray(weak, dtype=float)
    n = len(s)
    if n == 0 or not (len(st) == len(wk) == n):
        raise ValueError("scores, strong and weak must be non-empty and of equal length")
    gap = st.sum() - wk.sum()
    if gap <= 0:
        raise ValueError("the strong model is not better than the weak one on this data; PGR is undefined")
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    gain = (st - wk)[order]
    # Replace each block of tied scores by its mean gain (random choice inside the block).
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n])
    block_mean = np.add.reduceat(gain, starts) / sizes
    gain = np.repeat(block_mean, sizes)
    pgr = np.r_[0.0, np.cumsum(gain)] / gap
    shares = np.arange(n + 1) / n
    return shares, pgr


def apgr(shares: np.ndarray, pgr: np.ndarray) -> float:
    """Area under the PGR curve over strong shares 0..1 (trapezoid rule)."""
    return float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(shares)) / 2.0)


def cpt(shares: np.ndarray, pgr: np.ndarray, target: float) -> float:
    """Smallest strong share at which PGR first reaches ``target`` (linear interpolation)."""
    hit = np.flatnonzero(pgr >= target - 1e-12)
    if len(hit) == 0:
        return 1.0
    k = int(hit[0])
    if k == 0:
        return 0.0
    p0, p1 = pgr[k - 1], pgr[k]
    frac = (target - p0) / (p1 - p0) if p1 != p0 else 1.0
    return float(shares[k - 1] + frac * (shares[k] - shares[k - 1]))


def evaluate_scores(scores: Sequence[float], strong: Sequence[float], weak: Sequence[float]) -> RouterMetrics:
    """All summary metrics for one router's scores on one dataset."""
    shares, pgr = pgr_curve(scores, strong, weak)
    return RouterMetrics(apgr(shares, pgr), cpt(shares, pgr, 0.5), cpt(shares, pgr, 0.8), shares, pgr)


def pgr_at(scores: Sequence[float], strong: Sequence[float], weak: Sequence[float],
           shares: Sequence[float]) -> list[float] | None:
    """PGR at each of ``shares``; None when the strong model is not better on this data."""
    if float(np.sum(strong)) <= float(np.sum(weak)):
        return None
    curve_shares, pgr = pgr_curve(scores, strong, weak)
    return np.interp(shares, curve_shares, pgr).tolist()


def oracle_scores(strong: Sequence[float], weak: Sequence[float]) -> np.ndarray:
    """The oracle's scores: the realised quality gain of calling the strong model.

    Evaluation only: it reads the answers' grades, which no real router can see."""
    return np.asarray(strong, dtype=float) - np.asarray(weak, dtype=float)
