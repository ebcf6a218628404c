"""Turn a target share of strong calls into a score threshold.

Operators think in cost ("at most 30% of requests to the expensive model"); routers speak
in scores. Calibrating on a sample of real (or logged) prompts keeps that promise on the
traffic that matters, whatever the router's score scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .router import ScoringRouter


def threshold_for_scores(scores: Sequence[float], target_share: float) -> float:
    """Threshold t with the fraction of ``scores >= t`` as close to ``target_share`` as the
    ties allow (share 0 -> just above the top score, 1 -> -inf)."""
    if not 0.0 <= target_share <= 1.0:
        raise ValueError("target_share must be in [0, 1]")
    s = np.sort(np.asarray(scores, dtype=float))[::-1]
    n = len(s)
    if n == 0:
        raise ValueError("need at least one prompt to calibrate")
    k = int(round(target_share * n))
    if k <= 0:
        return float(np.nextafter(s[0], np.inf))
    if k >= n:
        return float("-inf")
    # Scores >= s[k-1] make k prompts strong (more with ties); put the threshold midway to
    # the next lower score so small score drift does not flip the boundary prompt.
    return float((s[k - 1] + s[k]) / 2.0) if s[k - 1] > s[k] else float(s[k - 1])


def calibrate_threshold(router: ScoringRouter, prompts: list[str], target_share: float) -> float:
    """Threshold such that about ``target_share`` of ``prompts`` score >= it."""
    return threshold_for_scores(router.score_many(prompts), target_share)
