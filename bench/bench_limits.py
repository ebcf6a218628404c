"""Cost of the tables `serve --workers N` shares (rate limits, breakers) against one process's memory.

Run: .venv/bin/python bench/bench_limits.py [--n 20000] [--rounds 5]

Each request of a key with rpm, tpm and a gateway-wide model limit is one `hit` of three
checks; a key with `max_parallel` adds an acquire and a release. Prints the median over
rounds of microseconds per operation for `MemoryLimits` (the baseline, per worker) and
`SharedLimits` (shared by `serve --workers N`), alone and with two processes hitting the
same scopes at once (the lock contended), and the ratios. Then the breakers: the check
made for every candidate deployment of every request (`Health.available`), with and
without the shared table attached, and one transition written by a worker and applied by
another.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from switchboard.accounting.limits import Check, MemoryLimits
from switchboard.accounting.shared_limits import SharedLimits
from switchboard.config import Deployment, config_from_dict
from switchboard.routing.health import Health
from switchboard.routing.shared_health import SharedBreakers, SharedHealthSync

CHECKS = [Check("key:bench:rpm", 10**12, 1), Check("key:bench:tpm", 10**12, 600), Check("model:m:rpm", 10**12, 1)]


async def _hits(limits: MemoryLimits | SharedLimits, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await limits.hit(CHECKS)
    return (time.perf_counter() - t0) / n * 1e6


async def _slots(limits: MemoryLimits | SharedLimits, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        member = f"req-{os.getpid()}-{i}"
        await limits.acquire("key:bench", 10**6, member, 900)
        await limits.release("key:bench", member)
    return (time.perf_counter() - t0) / n * 1e6


def _contended(limits: SharedLimits, n: int) -> float:
    """Microseconds per hit in each of two processes hitting at once (the mean of the two)."""
    r, w = os.pipe()
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            os.write(w, f"{asyncio.run(_hits(limits, n))}\n".encode())
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(w)
    out = os.read(r, 1024).decode().split()
    os.close(r)
    return statistics.mean(float(x) for x in out)


def _health() -> tuple[Health, Deployment]:
    config = config_from_dict({"models": {"m": {"deployments": [
        {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "id": "bench"}]}}})
    return Health(config), config.models["m"].deployments[0]


def _breaker_checks(health: Health, dep: Deployment, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        health.available(dep, time.monotonic())
    return (time.perf_counter() - t0) / n * 1e9


def _transitions(table: SharedBreakers, n: int) -> float:
    """Microseconds for a transition written (as a peer would) and applied by this worker's next look."""
    health, _ = _health()
    SharedHealthSync(health, table).start()
    t0 = time.perf_counter()
    for i in range(n):
        table.locked(table.write, 1234, 2, i, -1)
        health.sync()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    shared = SharedLimits()
    rows: dict[str, list[float]] = {k: [] for k in ("memory hit", "shared hit", "shared hit, 2 processes",
                                                    "memory acquire+release", "shared acquire+release")}
    breakers = SharedBreakers(1)
    (local_health, dep), (shared_health, _) = _health(), _health()
    SharedHealthSync(shared_health, breakers).start()
    checks: dict[str, list[float]] = {k: [] for k in ("local breaker check", "shared breaker check",
                                                      "shared transition, applied")}
    for _ in range(args.rounds):
        checks["local breaker check"].append(_breaker_checks(local_health, dep, args.n * 10))
        checks["shared breaker check"].append(_breaker_checks(shared_health, dep, args.n * 10))
        checks["shared transition, applied"].append(_transitions(breakers, args.n))
        memory = MemoryLimits()
        rows["memory hit"].append(asyncio.run(_hits(memory, args.n)))
        rows["shared hit"].append(asyncio.run(_hits(shared, args.n)))
        rows["shared hit, 2 processes"].append(_contended(shared, args.n))
        rows["memory acquire+release"].append(asyncio.run(_slots(memory, args.n)))
        rows["shared acquire+release"].append(asyncio.run(_slots(shared, args.n)))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"median of {args.rounds} rounds x {args.n} operations (3 checks per hit), microseconds per operation:")
    for name, value in med.items():
        print(f"  {name:28s} {value:7.2f} us")
    print(f"shared / memory: hit {med['shared hit'] / med['memory hit']:.2f}x, "
          f"contended hit {med['shared hit, 2 processes'] / med['memory hit']:.2f}x, "
          f"acquire+release {med['shared acquire+release'] / med['memory acquire+release']:.2f}x")
    med = {k: statistics.median(v) for k, v in checks.items()}
    print(f"breakers (median of {args.rounds} rounds): check per candidate deployment "
          f"{med['local breaker check']:.0f} ns local, {med['shared breaker check']:.0f} ns with the shared table "
          f"({med['shared breaker check'] / med['local breaker check']:.2f}x); "
          f"a peer's transition applied: {med['shared transition, applied']:.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
