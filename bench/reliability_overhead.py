"""Per-request cost of the reliability layer (pick, breaker, stats, metrics, attempt log) on the hot path.

Runs `Executor.run` in-process with a call that answers at once, so what is
timed is only our bookkeeping, and compares it with awaiting the call bare.

    .venv/bin/python bench/reliability_overhead.py
"""

from __future__ import annotations

import asyncio
import time

from switchboard.app import Gateway
from switchboard.config import config_from_dict
from switchboard.context import RequestContext

N = 50_000
ANSWER = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


async def answer(provider, dep):
    return ANSWER


async def main() -> None:
    deps = [{"provider": "openai", "base_url": f"http://127.0.0.1:{9000 + i}/v1", "id": f"d{i}"} for i in range(3)]
    for strategy in ("weighted", "latency", "least-busy"):
        config = config_from_dict({"storage": {"sqlite_path": ":memory:"},
                                   "models": {"m": {"deployments": deps, "strategy": strategy}}})
        gw = Gateway(config)
        model = config.models["m"]
        t0 = time.perf_counter()
        for _ in range(N):
            await answer(None, None)
        bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(N):
            ctx = RequestContext("openai", "chat")
            await gw.executor.run(model, ctx, answer)
            gw.metrics.finished(ctx)
        timed = time.perf_counter() - t0
        print(f"{strategy:>10}: {(timed - bare) / N * 1e6:6.2f} µs per request over a bare call "
              f"(including RequestContext creation and the request metrics)")


if __name__ == "__main__":
    asyncio.run(main())
