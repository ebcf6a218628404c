"""The GainRouter's semantic features: WordPiece splitting, the static MiniLM table, and
the two-head router's persistence (all numpy; no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_router_offline import synthetic_examples

from switchboard.routing.smart import load_router
from switchboard.routing.smart.embedding import (
    DEFAULT_TABLE,
    load_embedding,
    load_table,
    table_path,
)
from switchboard.routing.smart.metrics import evaluate_scores
from switchboard.routing.smart.features import tokenize
from switchboard.routing.smart.router import GainRouter, LinearRouter, RouterFormatError
from switchboard.routing.smart.structure import STRUCTURE_NAMES, structure_features
from switchboard.routing.smart.train import TrainConfig, train_router
from switchboard.routing.smart.wordpiece import WordPiece


def test_wordpiece_splits_like_bert() -> None:
    vocab, _, _ = load_table(DEFAULT_TABLE)
    wp = WordPiece(vocab)
    pieces = [vocab[i] for i in wp.ids("Unaffable CAFÉ snake_case, 3.14!")]
    assert pieces == ["una", "##ffa", "##ble", "cafe", "snake", "_", "case", ",", "3", ".", "14", "!"]
    assert wp.ids("") == []
    assert wp.ids("x" * 500) == [wp.unk_id]  # over-long words become [UNK], as in BERT


def test_static_table_ships_small_and_is_int8() -> None:
    path = table_path(DEFAULT_TABLE)
    assert path.stat().st_size < 3_000_000
    vocab, table_q, scale = load_table(DEFAULT_TABLE)
    assert table_q.dtype == np.int8 and table_q.shape == (len(vocab), len(scale))


def test_static_embedding_puts_related_prompts_closer() -> None:
    emb = load_embedding()

    def cos(a: str, b: str) -> float:
        x, y = emb.embed(a), emb.embed(b)
        return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))

    integral = "Evaluate the definite integral of x squared from zero to three."
    derivative = "Compute the derivative of the polynomial function at x equals two."
    recipe = "Which herbs go well in a tomato soup recipe for dinner?"
    assert cos(integral, derivative) > cos(integral, recipe)
    assert np.all(emb.embed("") == 0)


@pytest.mark.parametrize("config", [TrainConfig(embedding=DEFAULT_TABLE), TrainConfig(), TrainConfig(structure=True)],
                         ids=["minilm", "tfidf-only", "structure"])
def test_gain_router_round_trip(tmp_path: Path, config: TrainConfig) -> None:
    train, test = synthetic_examples(600, seed=0), synthetic_examples(300, seed=1)
    router = train_router(train, config=config)
    assert isinstance(router, GainRouter)
    path = tmp_path / "gain.npz"
    router.save(path)
    loaded = load_router(path)
    assert isinstance(loaded, GainRouter) and loaded.embedding_name == config.embedding
    assert loaded.structure == config.structure
    prompts = [e.prompt for e in test]
    scores = loaded.score_many(prompts)
    assert np.allclose(scores, router.score_many(prompts))
    assert np.all((scores >= 0) & (scores <= 1))
    assert evaluate_scores(scores, [e.strong for e in test], [e.weak for e in test]).apgr > 0.65
    assert loaded.threshold_for_share(0.5) == pytest.approx(loaded.default_threshold)


def test_structure_features_read_options_and_arithmetic() -> None:
    def features(text: str) -> dict[str, float]:
        values = structure_features(text, tokenize(text))
        assert len(values) == len(STRUCTURE_NAMES)
        return dict(zip(STRUCTURE_NAMES, values))

    mcq = features("Which of these is NOT a prime?\nA. 2\nB. 3\nC. 9\nD. All of the above\nAnswer:")
    assert mcq["options"] == 4 and mcq["negated_stem"] == 1 and mcq["above_option"] == 1
    assert mcq["numeric_option_share"] == 0.75
    word = features("Tom has $12.50 and spends half of it each day. What is left after 3 days?")
    assert word["options"] == 0 and word["log_money"] > 0 and word["log_decimals"] > 0
    assert word["log_multiplier_words"] > 0 and word["log_rate_words"] > 0 and word["log_change_words"] > 0
    assert features("")["options"] == 0


def test_linear_kind_still_trains() -> None:
    assert isinstance(train_router(synthetic_examples(300), config=TrainConfig(kind="linear")), LinearRouter)
    with pytest.raises(ValueError):
        train_router(synthetic_examples(300), config=TrainConfig(kind="forest"))


def test_router_naming_a_missing_table_is_a_clear_error(tmp_path: Path) -> None:
    router = train_router(synthetic_examples(300), config=TrainConfig(embedding=DEFAULT_TABLE))
    path = tmp_path / "r.npz"
    router.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["embedding_name"] = np.array("no-such-table")
    np.savez_compressed(path, **arrays)
    with pytest.raises(RouterFormatError, match="no-such-table"):
        load_router(path)
