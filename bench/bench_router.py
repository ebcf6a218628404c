"""Decision latency of the shipped default router: p50/p99 for a ~500-token prompt on one core.

Run: .venv/bin/python bench/bench_router.py [--router FILE] [--n 2000]
Target: p50 <= 1 ms (feature extraction included).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from switchboard.routing.smart import load_router
from switchboard.routing.smart.features import tokenize

PARAGRAPH = (
    "A bakery sells 120 loaves of bread each morning at $3.50 and, after 2 pm, sells the rest at half price. "
    "If on Tuesday it baked 15% more than usual and sold 84 loaves before 2 pm, how much money did it make? "
    "Explain the reasoning step by step and state which assumptions about leftover bread matter. "
)


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
    n_tokens = len(tokenize(prompt))
    # vary the text slightly so nothing can be cached between calls
    prompts = [f"{prompt} (request {i})" for i in range(args.n)]
    for p in prompts[:50]:
        router.score(p)
    times = []
    for p in prompts:
        t = time.perf_counter_ns()
        router.score(p)
        times.append(time.perf_counter_ns() - t)
    ms = np.array(times) / 1e6
    print(f"router {router.name}: load {load_ms:.1f} ms; prompt {n_tokens} word tokens, {len(prompt)} chars")
    print(f"decision latency p50 {np.percentile(ms, 50):.3f} ms  p90 {np.percentile(ms, 90):.3f} ms  "
          f"p99 {np.percentile(ms, 99):.3f} ms  (n={args.n})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
