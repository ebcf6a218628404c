"""Offline smart routing: loaders, training round trip, calibration, CLI, latency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from switchboard.routing.smart import calibrate_threshold, load_router
from switchboard.routing.smart.dataset import (
    STRONG_MODEL,
    WEAK_MODEL,
    DatasetError,
    Example,
    load_benchmark,
    load_gsm8k,
    load_jsonl,
    load_mmlu,
    load_mt_bench,
)
from switchboard.routing.smart.evaluate import decision_latency_ms, group_assignments, kfold_assignments
from switchboard.routing.smart.metrics import evaluate_scores
from switchboard.routing.smart.router import DEFAULT_ROUTER_PATH, RandomRouter, ScoringRouter
from switchboard.routing.smart.train import train_router

DATA = Path(__file__).parents[2] / "shared" / "data" / "routellm"
needs_data = pytest.mark.skipif(not (DATA / "mmlu").is_dir(), reason=f"RouteLLM data not found at {DATA}")
CLI = [sys.executable, "-m", "switchboard.routing.smart.cli"]

HARD = ["prove the integral converges", "derive the eigenvalues of the operator", "compute the residue of the pole",
        "estimate the asymptotic bound", "solve the differential equation"]
FILLER = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
          "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform"]
EASY = ["say hello to my friend", "what colour is the sky", "name a fruit", "tell me a short joke", "greet the user"]


def synthetic_examples(n: int, seed: int = 0) -> list[Example]:
    """Hard-topic prompts need the strong model, easy ones do not (with label noise); filler
    words make scores continuous. A perfect topic ranker reaches APGR ~0.72 here."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hard = bool(rng.random() < 0.4)
        filler = " ".join(rng.choice(FILLER, size=int(rng.integers(2, 8))))
        text = f"{rng.choice(HARD if hard else EASY)} please, {filler} case {i}"
        strong_wins = rng.random() < (0.8 if hard else 0.1)
        out.append(Example(text, 1.0, 0.0 if strong_wins else 1.0, "hard" if hard else "easy"))
    return out


def write_jsonl(path: Path, examples: list[Example]) -> None:
    with path.open("w") as fh:
        for i, e in enumerate(examples):
            if i % 2:
                fh.write(json.dumps({"prompt": e.prompt, "scores": {"strong": e.strong, "weak": e.weak}}) + "\n")
            else:
                winner = "strong" if e.strong > e.weak else "tie"
                fh.write(json.dumps({"prompt": e.prompt, "winner": winner, "group": e.group}) + "\n")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


# --- loaders -------------------------------------------------------------------------


@needs_data
def test_mmlu_loader_drops_contaminated_prompts() -> None:
    examples = load_mmlu(DATA)
    contaminated = {json.loads(line)["eval_prompt"] for line in (DATA / "mmlu" / "contaminated_prompts.jsonl").open()}
    assert len(examples) > 10000
    assert not contaminated & {e.prompt for e in examples}
    assert len({e.group for e in examples}) == 45
    assert {e.strong for e in examples} <= {0.0, 1.0}


@needs_data
def test_gsm8k_loader() -> None:
    examples = load_gsm8k(DATA)
    assert 1250 < len(examples) < 1319  # 1,319 minus the contaminated ones
    strong = np.mean([e.strong for e in examples])
    weak = np.mean([e.weak for e in examples])
    assert strong > weak


def test_mt_bench_loader_on_synthetic_data(tmp_path: Path) -> None:
    root = tmp_path / "mt_bench"
    root.mkdir()
    questions = [
        {"question_id": 1, "category": "math", "turns": ["first q", "follow-up 1"]},
        {"question_id": 2, "category": "writing", "turns": ["second q", "follow-up 2"]},
        {"question_id": 3, "category": "math", "turns": ["leaked q", "follow-up 3"]},
    ]
    judgements = [
        {"question_id": 1, "model": STRONG_MODEL, "score": 9, "turn": 1},
        {"question_id": 1, "model": STRONG_MODEL, "score": 7, "turn": 2},
        {"question_id": 1, "model": WEAK_MODEL, "score": 4, "turn": 1},
        {"question_id": 1, "model": WEAK_MODEL, "score": -1, "turn": 2},  # unparsable judge output
        {"question_id": 2, "model": STRONG_MODEL, "score": 8, "turn": 1},
        {"question_id": 2, "model": WEAK_MODEL, "score": 8, "turn": 1},
        {"question_id": 3, "model": STRONG_MODEL, "score": 10, "turn": 1},
        {"question_id": 3, "model": WEAK_MODEL, "score": 1, "turn": 1},
    ]
    (root / "question.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    (root / "judgements.jsonl").write_text("\n".join(json.dumps(j) for j in judgements) + "\n")
    (root / "contaminated_prompts.jsonl").write_text(json.dumps({"eval_prompt": "leaked q"}) + "\n")

    examples = load_mt_bench(tmp_path)
    assert [e.prompt for e in examples] == ["first q", "second q"]  # routed on turn 1
    assert examples[0].strong == pytest.approx(0.8) and examples[0].weak == pytest.approx(0.4)
    assert examples[0].label == pytest.approx(0.7)
    assert examples[1].label == pytest.approx(0.5)
    assert load_benchmark(tmp_path, "mt-bench") == examples

    # route-eval reads the same layout through the CLI
    router = tmp_path / "random.npz"
    RandomRouter(seed=1).save(router)
    out = last_json(run_cli("route-eval", "--data", str(tmp_path), "--benchmark", "mt-bench",
                            "--router", str(router), "--json").stdout)
    assert out["benchmark"] == "mt-bench"
    assert set(out["routers"]) == {"random", "oracle"}


def test_jsonl_loader_formats(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"prompt": "a", "scores": {"strong": 1, "weak": 0}}\n'
        '{"prompt": "b", "winner": "weak", "group": "g"}\n\n'
        '{"prompt": "c", "winner": "tie"}\n'
    )
    a, b, c = load_jsonl(path)
    assert (a.label, b.label, c.label) == (1.0, 0.0, 0.5)
    assert b.group == "g"
    path.write_text('{"prompt": "x", "winner": "maybe"}\n')
    with pytest.raises(DatasetError):
        load_jsonl(path)


CSV_HEADER = f"prompt,{STRONG_MODEL},{WEAK_MODEL}\n"


@pytest.mark.parametrize("files, expected", [
    ({"gsm8k/responses.csv": CSV_HEADER + '"a\nlong\nprompt",True,False\nb,True,maybe\n'},
     "responses.csv:5: 'maybe' is not true, false or a score from 0 to 1"),
    ({"gsm8k/responses.csv": CSV_HEADER + "a,True,nan\n"}, "responses.csv:2: scores must be finite numbers"),
    ({"gsm8k/responses.csv": CSV_HEADER + "a,True\n"}, "responses.csv:2: the row has fewer values than the header"),
    ({"gsm8k/responses.csv": (CSV_HEADER + "a,True,False\ncaf\xe9,True,False\n").encode("latin-1")},
     "responses.csv:3: not UTF-8 text"),
    ({"mmlu/algebra.csv": "question,answer\nwhat is 1+1,2\n"}, "algebra.csv: needs the columns 'prompt'"),
    ({"gsm8k/responses.csv": CSV_HEADER, "gsm8k/contaminated_prompts.jsonl": "leaked prompt\n"},
     "contaminated_prompts.jsonl:1: not JSON"),
    ({"gsm8k/responses.csv": CSV_HEADER, "gsm8k/contaminated_prompts.jsonl": '{"train_prompt": "x"}\n'},
     "contaminated_prompts.jsonl:1: 'eval_prompt' must be a string"),
    ({"mt_bench/question.jsonl": '{"question_id": 1, "turns": ["q"]}\n',
      "mt_bench/judgements.jsonl": f'{{"question_id": 1, "model": "{STRONG_MODEL}", "score": 9}}\n'
                                   f'{{"question_id": 1, "model": "{WEAK_MODEL}"}}\n'},
     "judgements.jsonl:2: 'score' must be a number"),
    ({"mt_bench/question.jsonl": '{"question_id": 1, "turns": ["q"]}\n',
      "mt_bench/judgements.jsonl": f'{{"question_id": 1, "model": "{STRONG_MODEL}", "score": 15}}\n'},
     "judgements.jsonl:1: 'score' must be at most 10, got 15"),
    ({"mt_bench/question.jsonl": '{"question_id": 1, "prompt": "q"}\n', "mt_bench/judgements.jsonl": ""},
     "question.jsonl:1: 'turns' must be a list of strings"),
])
def test_loaders_name_the_file_and_line_of_data_they_cannot_use(tmp_path: Path, files: dict, expected: str) -> None:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content)
    benchmark = next(iter(files)).split("/")[0].replace("_", "-")
    with pytest.raises(DatasetError) as info:
        load_benchmark(tmp_path, benchmark)
    assert expected in str(info.value)


def test_jsonl_scores_must_be_from_0_to_1(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    path.write_text('{"prompt": "a", "scores": {"strong": 0.75, "weak": 0}}\n'
                    '{"prompt": "b", "scores": {"strong": 1, "weak": 0.25}}\n')
    assert [e.label for e in load_jsonl(path)] == [0.875, 0.875]
    for strong in ("8", "1.01", "-0.1", "Infinity", "NaN"):
        path.write_text('{"prompt": "a", "scores": {"strong": 1, "weak": 0}}\n'
                        f'{{"prompt": "b", "scores": {{"strong": {strong}, "weak": 0}}}}\n')
        with pytest.raises(DatasetError, match=r"scores\.jsonl:2: scores must be"):
            load_jsonl(path)


def test_kfold_refuses_more_folds_than_examples() -> None:
    assert sorted(kfold_assignments(5, 5).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot split 5 examples into 6 folds"):
        kfold_assignments(5, 6)


def test_group_assignment_keeps_groups_whole() -> None:
    groups = [g for g in "abcdefg" for _ in range(5)]
    fold = group_assignments(groups, 3)
    for g in set(groups):
        assert len({f for f, gg in zip(fold, groups) if gg == g}) == 1
    assert len(set(fold.tolist())) == 3


# --- training, persistence, calibration ------------------------------------------------


def test_train_save_load_round_trip(tmp_path: Path) -> None:
    train, test = synthetic_examples(600, seed=0), synthetic_examples(300, seed=1)
    router = train_router(train)
    path = tmp_path / "r.npz"
    router.save(path)
    loaded = load_router(path)
    assert isinstance(loaded, ScoringRouter)
    assert loaded.name == router.name
    assert loaded.default_threshold == pytest.approx(router.default_threshold)
    prompts = [e.prompt for e in test]
    assert np.allclose(loaded.score_many(prompts), router.score_many(prompts))
    assert all(0.0 <= s <= 1.0 for s in loaded.score_many(prompts))
    m = evaluate_scores(loaded.score_many(prompts), [e.strong for e in test], [e.weak for e in test])
    assert m.apgr > 0.65  # it learned that the hard topics need the strong model
    assert loaded.threshold_for_share(0.5) == pytest.approx(loaded.default_threshold)

    RandomRouter(seed=5).save(path)
    rnd = load_router(path)
    assert rnd.score("x") == RandomRouter(seed=5).score("x")


def test_calibrated_share_holds_on_held_out_prompts() -> None:
    router = train_router(synthetic_examples(400, seed=2))
    calib = [e.prompt for e in synthetic_examples(1000, seed=3)]
    held_out = [e.prompt for e in synthetic_examples(1000, seed=4)]
    for target in (0.2, 0.5, 0.8):
        t = calibrate_threshold(router, calib, target)
        share = float(np.mean(router.score_many(held_out) >= t))
        assert abs(share - target) <= 0.05, (target, share)
    assert float(np.mean(router.score_many(calib) >= calibrate_threshold(router, calib, 0.0))) == 0.0
    assert float(np.mean(router.score_many(calib) >= calibrate_threshold(router, calib, 1.0))) == 1.0


@needs_data
def test_calibrated_share_holds_on_unseen_mmlu_subjects() -> None:
    examples = load_mmlu(DATA)
    subjects = sorted({e.group for e in examples})
    train = [e for e in examples if e.group in subjects[:8]]
    rest = [e.prompt for e in examples if e.group not in subjects[:8]]
    rng = np.random.default_rng(0)
    rng.shuffle(rest)
    router = train_router(train)
    calib, held_out = rest[:1500], rest[1500:3500]
    for target in (0.3, 0.5):
        t = calibrate_threshold(router, calib, target)
        assert abs(float(np.mean(router.score_many(held_out) >= t)) - target) <= 0.05


@needs_data
def test_quality_target_and_share_hold_on_held_out_mmlu() -> None:
    """The stored curve and thresholds come from cross-fitted scores, so they describe the
    router on prompts it has not seen: half of MMLU trains it, the other half checks."""
    examples = load_mmlu(DATA)
    order = np.random.default_rng(7).permutation(len(examples))
    train = [examples[i] for i in order[: len(order) // 2]]
    held_out = [examples[i] for i in order[len(order) // 2:]]
    router = train_router(train)
    assert router.meta["calibrated_on"] == "5-fold cross-fit"
    scores = router.score_many([e.prompt for e in held_out])
    strong, weak = np.array([e.strong for e in held_out]), np.array([e.weak for e in held_out])
    for share in (0.3, 0.5):
        assert abs(float(np.mean(scores >= router.threshold_for_share(share))) - share) <= 0.05
    for target in (0.5, 0.8):
        share = router.share_for_quality(target)
        routed_strong = scores >= router.threshold_for_share(share)
        pgr = (np.where(routed_strong, strong, weak).sum() - weak.sum()) / (strong.sum() - weak.sum())
        assert abs(float(np.mean(routed_strong)) - share) <= 0.05, (target, share)
        # Within 0.06 below (the promise) and 0.08 above (a model fitted on all of the
        # training half is a little better than the cross-fitted ones that drew the curve).
        assert target - 0.06 <= pgr <= target + 0.08, (target, pgr)
    assert router.share_for_quality(0.5) < router.share_for_quality(0.8) < 1.0


def test_quality_curve_round_trip_and_without_one(tmp_path: Path) -> None:
    from switchboard.routing.smart.train import TrainConfig

    router = train_router(synthetic_examples(600, seed=0))
    router.save(tmp_path / "r.npz")
    loaded = load_router(tmp_path / "r.npz")
    assert loaded.quality_pgr == pytest.approx(router.quality_pgr) and len(loaded.quality_pgr) == 19
    assert loaded.share_for_quality(0.8) == pytest.approx(router.share_for_quality(0.8))
    assert loaded.share_for_quality(0.0) == 0.0
    assert 0.0 < loaded.share_for_quality(0.5) < loaded.share_for_quality(0.9) <= 1.0
    assert RandomRouter().share_for_quality(0.3) == pytest.approx(0.3)  # random: PGR equals the share
    bare = train_router(synthetic_examples(600, seed=0), config=TrainConfig(quality_folds=0))
    bare.save(tmp_path / "bare.npz")
    with pytest.raises(ValueError, match="no stored quality curve"):
        load_router(tmp_path / "bare.npz").share_for_quality(0.8)

    info = last_json(run_cli("router", "info", str(tmp_path / "r.npz"), "--json").stdout)
    assert info["name"] == router.name and info["calibrated_on"] == "5-fold cross-fit"
    assert [r["strong_share"] for r in info["shares"]] == sorted(router.share_thresholds)
    assert info["shares"][5]["pgr"] == pytest.approx(router.quality_pgr[0.3], abs=1e-4)
    assert info["quality_targets"]["0.8"] == pytest.approx(router.share_for_quality(0.8), abs=1e-4)
    text = run_cli("router", "info", str(tmp_path / "bare.npz")).stdout
    assert "no quality curve stored" in text and "training scores" in text


# --- shipped default and latency -------------------------------------------------------


def test_default_router_ships_small_and_loads() -> None:
    assert DEFAULT_ROUTER_PATH.exists()
    assert DEFAULT_ROUTER_PATH.stat().st_size < 5_000_000
    router = load_router()
    hard = "Let f be a holomorphic function on the unit disk. Prove that the integral of f over the circle is zero."
    s = router.score(hard)
    assert 0.0 <= s <= 1.0
    assert 0.0 < router.default_threshold < 1.0
    assert router.route_strong(hard, threshold=0.0)


def test_decision_latency_is_measured() -> None:
    router = load_router()
    prompt = " ".join(["The train leaves the station at 3 pm carrying 120 passengers"] * 45)  # ~500 tokens
    ms = decision_latency_ms(router, [prompt] * 50)
    print(f"default router decision p50 for a ~500-token prompt: {ms:.3f} ms")
    assert ms > 0  # speed targets are checked in bench/bench_router.py, not here


# --- CLI -------------------------------------------------------------------------------


def test_cli_train_and_eval_on_own_jsonl(tmp_path: Path) -> None:
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    write_jsonl(train, synthetic_examples(400, seed=6))
    write_jsonl(test, synthetic_examples(200, seed=7))
    out = tmp_path / "mine.npz"
    run_cli("router", "train", "--data", str(train), "--out", str(out), "--name", "mine")
    assert load_router(out).name == "mine"
    result = last_json(run_cli("route-eval", "--data", str(test), "--router", str(out), "--json").stdout)
    assert result["routers"]["mine"]["apgr"] > 0.65
    assert set(result["routers"]["mine"]) >= {"apgr", "cpt50", "cpt80", "decision_ms_p50"}


def test_cli_train_of_a_verifier_says_how_many_prompts_it_learned_from(tmp_path: Path) -> None:
    # a feedback export where only some ratings carry the answer (the gateway stored prompts part of the time)
    data = tmp_path / "rated.jsonl"
    with data.open("w") as fh:
        for i, e in enumerate(synthetic_examples(60, seed=3)):
            line = {"prompt": e.prompt, "winner": "strong" if e.strong > e.weak else "weak"}
            fh.write(json.dumps({**line, "weak_answer": f"answer {i}"} if i < 40 else line) + "\n")
    out = run_cli("router", "train", "--kind", "verifier", "--data", str(data), "--out", str(tmp_path / "v.npz"))
    # it said "on 60 prompts", though the 20 without an answer were left out
    assert "on 40 prompts (20 without a 'weak_answer' left out)" in out.stdout
    assert load_router(tmp_path / "v.npz").meta["examples"] == 40


@needs_data
def test_cli_route_eval_folds_on_gsm8k_prints_json_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    proc = run_cli("route-eval", "--data", str(DATA), "--benchmark", "gsm8k", "--folds", "2", "--json",
                   "--plot", str(png))
    result = last_json(proc.stdout)
    assert result["benchmark"] == "gsm8k"
    routers = result["routers"]
    assert {"learned-2fold", "random", "oracle"} <= set(routers)
    assert routers["oracle"]["apgr"] > 0.9
    assert routers["learned-2fold"]["apgr"] > routers["random"]["apgr"] - 0.05
    # GSM8K carries the weak model's answers, so the cascade's verifier is cross-validated too;
    # seeing the answer, it recovers more of the gap than any prompt-only router.
    assert routers["cascade-verifier-2fold"]["apgr"] > routers["learned-2fold"]["apgr"] + 0.05
    assert "weak model is called on every prompt" in proc.stdout
    for r in routers.values():
        assert 0 <= r["cpt50"] <= r["cpt80"] <= 100
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_data
def test_cli_route_eval_shipped_router_on_mmlu(tmp_path: Path) -> None:
    result = last_json(run_cli("route-eval", "--data", str(DATA), "--benchmark", "mmlu",
                               "--router", str(DEFAULT_ROUTER_PATH), "--json").stdout)
    assert result["benchmark"] == "mmlu"
    assert result["routers"][load_router().name]["decision_ms_p50"] >= 0


def test_register_is_cheap_and_wires_func() -> None:
    code = (
        "import argparse, sys; from switchboard.routing.smart import cli; "
        "p = argparse.ArgumentParser(); cli.register(p.add_subparsers(dest='c')); "
        "a = p.parse_args(['router', 'train', '--data', 'x', '--out', 'y']); assert callable(a.func); "
        "assert 'switchboard.routing.smart.train' not in sys.modules; "
        "assert 'switchboard.routing.smart.linear' not in sys.modules; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


@needs_data
def test_cli_route_eval_of_a_verifier_needs_weak_answers(tmp_path: Path) -> None:
    verifier = tmp_path / "v.npz"
    run_cli("router", "train", "--kind", "verifier", "--data", str(DATA), "--benchmark", "gsm8k", "--out", str(verifier))
    result = last_json(run_cli("route-eval", "--data", str(DATA), "--benchmark", "gsm8k", "--router", str(verifier),
                               "--json").stdout)
    assert result["routers"]["answer-verifier"]["apgr"] > 0.7  # in-sample: it was trained on these answers
    proc = subprocess.run([*CLI, "route-eval", "--data", str(DATA), "--benchmark", "mmlu",
                           "--router", str(verifier)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "has no weak-model answers" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([*CLI, "router", "train", "--kind", "verifier", "--data",
                           str(DATA), "--benchmark", "mmlu", "--out", str(tmp_path / "x.npz")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "needs at least 10 examples with the weak model's answer" in proc.stderr


@needs_data
def test_verifier_escalate_share_holds_on_held_out_answers() -> None:
    from switchboard.routing.smart.train import train_verifier

    examples = load_gsm8k(DATA)
    assert all(e.weak_answer for e in examples)
    order = np.random.default_rng(5).permutation(len(examples))
    train = [examples[i] for i in order[:900]]
    held_out = [examples[i] for i in order[900:]]
    verifier = train_verifier(train)
    scores = verifier.score_examples(held_out)
    for share in (0.2, 0.3, 0.5):
        escalated = float(np.mean(scores >= verifier.threshold_for_share(share)))
        assert abs(escalated - share) <= 0.05, (share, escalated)
    # Escalating the answers it doubts most recovers more of the gap than escalating at random.
    m = evaluate_scores(scores, [e.strong for e in held_out], [e.weak for e in held_out])
    assert m.apgr > 0.65
    with pytest.raises(TypeError, match="answer verifier"):
        verifier.score(held_out[0].prompt)


def test_option_geometry_features() -> None:
    from switchboard.routing.smart.embedding import load_embedding
    from switchboard.routing.smart.options import OPTION_NAMES, option_features, parse_options

    question = "Which gas do plants absorb?\nA. Oxygen\nB. Carbon dioxide\nC. Nitrogen\nD. 42\nAnswer:"
    assert parse_options(question) == ("Which gas do plants absorb?", ["Oxygen", "Carbon dioxide", "Nitrogen", "42"])
    assert parse_options("Explain photosynthesis.\nA. bit of context") is None
    table = load_embedding()
    named = dict(zip(OPTION_NAMES, option_features(question, table)))
    assert named["opt_parsed"] == 1.0 and named["opt_numeric_frac"] == 0.25
    assert -1.0 <= named["opt_pair_min"] <= named["opt_pair_mean"] <= named["opt_pair_max"] <= 1.0
    same = dict(zip(OPTION_NAMES, option_features("Pick one.\nA. red apple\nB. red apple\nC. red apple", table)))
    assert same["opt_pair_min"] == pytest.approx(1.0)
    assert option_features("What is 2 + 2?", table) == [0.0] * len(OPTION_NAMES)


def _multiple_choice(n: int, seed: int) -> list[Example]:
    """The strong model is needed (mostly) when the four options are near-synonyms. Every word is as
    frequent in hard questions as in easy ones, so word features cannot tell them apart; the option
    geometry can."""
    rng = np.random.default_rng(seed)
    groups = [["big", "large", "huge", "giant"], ["red", "blue", "green", "yellow"], ["dog", "cat", "horse", "cow"],
              ["apple", "banana", "orange", "grape"], ["car", "truck", "bus", "van"],
              ["happy", "glad", "joyful", "cheerful"]]
    out = []
    for i in range(n):
        hard = bool(rng.random() < 0.5)
        if hard:
            options = [str(w) for w in rng.permutation(groups[int(rng.integers(len(groups)))])]
        else:
            options = [str(rng.choice(groups[g])) for g in rng.choice(len(groups), 4, replace=False)]
        prompt = f"Question {i}: which word fits best?\n" + "".join(
            f"{letter}. {o}\n" for letter, o in zip("ABCD", options)) + "Answer:"
        strong_wins = rng.random() < (0.85 if hard else 0.15)
        out.append(Example(prompt, 1.0, 0.0 if strong_wins else 1.0, "mc"))
    return out


def test_option_geometry_lets_the_router_see_what_words_cannot(tmp_path: Path) -> None:
    from switchboard.routing.smart.train import TrainConfig

    train, test = _multiple_choice(600, seed=0), _multiple_choice(400, seed=1)

    def apgr(router: ScoringRouter) -> float:
        scores = router.score_many([e.prompt for e in test])
        return evaluate_scores(scores, [e.strong for e in test], [e.weak for e in test]).apgr

    with_options = train_router(train, config=TrainConfig(quality_folds=0))
    without = train_router(train, config=TrainConfig(quality_folds=0, options=False))
    with_options.save(tmp_path / "options.npz")
    loaded = load_router(tmp_path / "options.npz")
    assert loaded.stat_names()[-1] == "opt_numeric_frac"
    assert np.allclose(loaded.score_many([e.prompt for e in test]), with_options.score_many([e.prompt for e in test]))
    assert apgr(with_options) > apgr(without) + 0.1, (apgr(with_options), apgr(without))
