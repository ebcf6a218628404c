"""PGR / APGR / CPT on examples small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest

from switchboard.routing.smart.metrics import apgr, cpt, evaluate_scores, oracle_scores, pgr_curve
from switchboard.routing.smart.router import RandomRouter

# Four prompts: gains (strong - weak) are +1, +1, 0, -1; strong total 3, weak total 2, gap 1.
STRONG = [1, 1, 1, 0]
WEAK = [0, 0, 1, 1]


def test_oracle_curve_by_hand() -> None:
    shares, pgr = pgr_curve(oracle_scores(STRONG, WEAK), STRONG, WEAK)
    assert shares.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert pgr.tolist() == [0, 1, 2, 2, 1]
    # trapezoids: 0.25 * (0.5 + 1.5 + 2 + 1.5) = 1.375
    assert apgr(shares, pgr) == pytest.approx(1.375)
    assert cpt(shares, pgr, 0.5) == pytest.approx(0.125)  # halfway to the first strong call
    assert cpt(shares, pgr, 0.8) == pytest.approx(0.2)


def test_worst_order_by_hand() -> None:
    m = evaluate_scores([0, 1, 2, 3], STRONG, WEAK)  # routes the -1 gain first
    assert m.pgr.tolist() == [0, -1, -1, 0, 1]
    assert m.apgr == pytest.approx(0.25 * (-0.5 - 1 - 0.5 + 0.5))
    assert m.cpt50 == pytest.approx(0.875)
    assert m.cpt80 == pytest.approx(0.95)


def test_constant_score_is_exactly_random() -> None:
    m = evaluate_scores([0.3] * 4, STRONG, WEAK)
    assert m.pgr.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert m.apgr == pytest.approx(0.5)
    assert m.cpt50 == pytest.approx(0.5)
    assert m.cpt80 == pytest.approx(0.8)


def test_ties_do_not_depend_on_input_order() -> None:
    a = evaluate_scores([1, 1, 0, 0], STRONG, WEAK).apgr
    b = evaluate_scores([0, 0, 1, 1][::-1], STRONG, WEAK).apgr
    assert a == b


def test_random_router_is_about_half() -> None:
    rng = np.random.default_rng(1)
    strong = (rng.random(4000) < 0.8).astype(float)
    weak = (rng.random(4000) < 0.6).astype(float)
    prompts = [f"prompt number {i}" for i in range(4000)]
    m = evaluate_scores(RandomRouter(seed=3).score_many(prompts), strong, weak)
    assert m.apgr == pytest.approx(0.5, abs=0.05)
    assert m.cpt50 == pytest.approx(0.5, abs=0.1)


def test_oracle_beats_everything_on_random_data() -> None:
    rng = np.random.default_rng(2)
    strong = (rng.random(1000) < 0.8).astype(float)
    weak = (rng.random(1000) < 0.6).astype(float)
    oracle = evaluate_scores(oracle_scores(strong, weak), strong, weak)
    assert oracle.apgr > 0.9
    assert oracle.cpt50 < 0.3


def test_undefined_when_strong_is_not_better() -> None:
    with pytest.raises(ValueError):
        pgr_curve([0, 1], [0, 1], [1, 0])
