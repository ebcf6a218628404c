"""Decision latency of the shipped default router: p50/p99 for a ~500-token prompt on one core.

Run: .venv/bin/python bench/bench_router.py [--router FILE] [--n 2000]
Target: p50 <= 1 ms (feature extraction included).

A prompt-only router is measured on two ~500-token prompts: a word problem, and a
multiple-choice question (whose options the default router also embeds, see
routing/smart/options.py). With a cascade answer verifier (`switchboard router train
--kind verifier`) as --router, each decision scores the word problem together with a
~300-token worked answer.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from switchboard.routing.smart import load_router
from switchboard.routing.smart.features import tokenize
from switchboard.routing.smart.router import VerifierRouter

PARAGRAPH = (
    "A bakery sells 120 loaves of bread each morning at $3.50 and, after 2 pm, sells the rest at half price. "
    "If on Tuesday it baked 15% more than usual and sold 84 loaves before 2 pm, how much money did it make? "
    "Explain the reasoning step by step and state which assumptions about leftover bread matter. "
)
WORKING = (
    "Usually it bakes 120 loaves, so on Tuesday it baked 120 * 1.15 = <<120*1.15=138>>138 loaves.\n"
    "Before 2 pm it sold 84 loaves for 84 * $3.50 = $<<84*3.5=294>>294.\n"
    "The rest, 138 - 84 = <<138-84=54>>54 loaves, sold at $3.50 / 2 = $<<3.5/2=1.75>>1.75 each: "
    "54 * 1.75 = $<<54*1.75=94.5>>94.50.\n"
)


QUESTION = (
    "A company's board is weighing two financing plans for a new plant. Under the first, it issues bonds at a "
    "fixed rate and keeps full ownership; under the second, it sells new shares and leaves its debt unchanged. "
    "Analysts expect the plant to raise operating income, but the forecast is uncertain and the industry is "
    "cyclical, so earnings may fall sharply in a downturn. Which consideration most strongly favours equity? "
)
OPTIONS = (
    "A. Interest payments are deductible, lowering the after-tax cost of the bonds for the company.\n"
    "B. Fixed interest obligations raise the risk of financial distress when earnings are volatile.\n"
    "C. Issuing shares dilutes existing owners, so their claim on future profits becomes smaller.\n"
    "D. Bond covenants may limit how the board can pay dividends or take on further projects.\n"
    "Answer:"
)


def _timed(score: object, prompt: str, n: int) -> np.ndarray:
    prompts = [f"(request {i}) {prompt}" for i in range(n)]  # varied, so nothing can be cached between calls
    for p in prompts[:50]:
        score(p)  # type: ignore[operator]
    times = []
    for p in prompts:
        t = time.perf_counter_ns()
        score(p)  # type: ignore[operator]
        times.append(time.perf_counter_ns() - t)
    return np.array(times) / 1e6


def _report(label: str, prompt: str, ms: np.ndarray, note: str = "") -> None:
    print(f"{label}: {len(tokenize(prompt))} word tokens, {len(prompt)} chars{note}")
    print(f"  decision latency p50 {np.percentile(ms, 50):.3f} ms  p90 {np.percentile(ms, 90):.3f} ms  "
          f"p99 {np.percentile(ms, 99):.3f} ms  (n={len(ms)})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--router", default=None)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    router = load_router(args.router)
    load_ms = (time.perf_counter() - t0) * 1e3
    prompt = PARAGRAPH
    while len(tokenize(prompt)) < 500:
        prompt += PARAGRAPH
    score = router.score
    answer_note = ""
    if isinstance(router, VerifierRouter):
        answer = WORKING
        while len(tokenize(answer)) < 300:
            answer += WORKING
        answer += "In total it made 294 + 94.50 = $<<294+94.5=388.5>>388.50.\n#### 388.5"
        answer_note = f"; with an answer of {len(tokenize(answer))} word tokens"

        def score(p: str) -> float:
            return router.score_answer(p, answer)

    print(f"router {router.name}: load {load_ms:.1f} ms")
    _report("word problem", prompt, _timed(score, prompt, args.n), answer_note)
    if not isinstance(router, VerifierRouter):
        question = QUESTION
        while len(tokenize(question + OPTIONS)) < 500:
            question += QUESTION
        _report("multiple choice", question + "\n" + OPTIONS, _timed(score, question + "\n" + OPTIONS, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
