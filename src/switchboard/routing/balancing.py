"""Balancing: which deployment of a model takes the next attempt.

Each deployment has a `DeploymentStats` (in-flight count, EWMA of latency and
of time to first token, recent latencies for percentiles, and a sliding
minute of requests and tokens for rpm/tpm headroom). Every update is O(1) and
allocation-free, since it runs once or twice per request. A strategy picks one
deployment out of the candidates the health check left:

    weighted    random, proportional to `weight`
    least-busy  fewest attempts in flight (ties at random)
    latency     lowest EWMA latency (TTFT for streams); unmeasured ones first
    cost        cheapest price per token, then weighted
    headroom    most rpm/tpm headroom against the deployment's limits
    ordered     the config's order

Whatever the strategy, a deployment at its configured rpm/tpm limit is used
only when no other candidate is left.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from switchboard.config import Deployment, ModelConfig

_EWMA_ALPHA = 0.2
_RING = 128


class DeploymentStats:
    """What this replica has recently seen of one deployment."""

    __slots__ = (
        "_minute",
        "_p_at",
        "_p_cache",
        "_req_now",
        "_req_prev",
        "_ring",
        "_ring_len",
        "_ring_pos",
        "_seen",
        "_tok_now",
        "_tok_prev",
        "ewma_latency",
        "ewma_ttft",
        "in_flight",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.ewma_latency: float | None = None
        self.ewma_ttft: float | None = None
        self._ring = [0.0] * _RING
        self._ring_pos = 0
        self._ring_len = 0
        self._minute = 0
        self._req_now = self._req_prev = 0
        self._tok_now = self._tok_prev = 0
        self._p_cache: dict[float, float] = {}
        self._p_at = -1000
        self._seen = 0

    # ------------------------------------------------------------ updates

    def observe(self, seconds: float, stream: bool) -> None:
        """A successful attempt's latency: whole answer for unary calls, first chunk for streams."""
        if stream:
            self.ewma_ttft = seconds if self.ewma_ttft is None else self.ewma_ttft + _EWMA_ALPHA * (seconds - self.ewma_ttft)
        else:
            self.ewma_latency = seconds if self.ewma_latency is None else \
                self.ewma_latency + _EWMA_ALPHA * (seconds - self.ewma_latency)
        self._ring[self._ring_pos] = seconds
        self._ring_pos = (self._ring_pos + 1) % _RING
        if self._ring_len < _RING:
            self._ring_len += 1
        self._seen += 1

    def count_request(self, now: float) -> None:
        self._roll(now)
        self._req_now += 1

    def count_tokens(self, tokens: int, now: float) -> None:
        self._roll(now)
        self._tok_now += tokens

    def _roll(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self._minute:
            if minute == self._minute + 1:
                self._req_prev, self._tok_prev = self._req_now, self._tok_now
            else:
                self._req_prev = self._tok_prev = 0
            self._req_now = self._tok_now = 0
            self._minute = minute

    # ------------------------------------------------------------ reads

    def rate(self, now: float) -> tuple[float, float]:
        """(requests, tokens) in the last sixty seconds, by the sliding-window approximation."""
        self._roll(now)
        carry = 1.0 - (now % 60) / 60.0
        return self._req_now + self._req_prev * carry, self._tok_now + self._tok_prev * carry

    def percentile(self, p: float) -> float | None:
        """Recent latency percentile; recomputed at most every 16 samples (a 128-float sort)."""
        if self._ring_len < 20:
            return None
        if self._seen - self._p_at >= 16:
            self._p_cache.clear()
            self._p_at = self._seen
        value = self._p_cache.get(p)
        if value is None:
            samples = sorted(self._ring[: self._ring_len])
            value = self._p_cache[p] = samples[min(len(samples) - 1, int(len(samples) * p / 100.0))]
        return value


class Balancer:
    """Holds every deployment's stats and applies a model's strategy."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.stats: dict[str, DeploymentStats] = {}

    def of(self, dep: Deployment) -> DeploymentStats:
        stats = self.stats.get(dep.id)
        if stats is None:
            stats = self.stats[dep.id] = DeploymentStats()
        return stats

    def saturated(self, dep: Deployment, now: float) -> bool:
        if dep.rpm is None and dep.tpm is None:
            return False
        requests, tokens = self.of(dep).rate(now)
        return (dep.rpm is not None and requests >= dep.rpm) or (dep.tpm is not None and tokens >= dep.tpm)

    def pick(self, model: ModelConfig, candidates: Sequence[Deployment], stream: bool) -> Deployment:
        """The candidate the model's strategy prefers (candidates is non-empty)."""
        if len(candidates) == 1:
            return candidates[0]
        now = time.time()
        if any(d.rpm is not None or d.tpm is not None for d in candidates):
            open_ = [d for d in candidates if not self.saturated(d, now)]
            if open_:
                candidates = open_
                if len(candidates) == 1:
                    return candidates[0]
        strategy = model.strategy
        if strategy == "weighted":
            return self.weighted(candidates)
        if strategy == "ordered":
            return candidates[0]
        if strategy == "least-busy":
            low = min(self.of(d).in_flight for d in candidates)
            return self.weighted([d for d in candidates if self.of(d).in_flight == low])
        if strategy == "latency":
            return self.fastest(candidates, stream)
        if strategy == "cost":
            price = {d.id: _unit_price(d, model) for d in candidates}
            low = min(price.values())
            return self.weighted([d for d in candidates if price[d.id] <= low * 1.000001])
        if strategy == "headroom":
            return max(candidates, key=lambda d: (self.headroom(d, now), self.rng.random()))
        return self.weighted(candidates)

    def weighted(self, candidates: Sequence[Deployment]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        total = sum(d.weight for d in candidates)
        if total <= 0:
            return candidates[self.rng.randrange(len(candidates))]
        x = self.rng.random() * total
        for d in candidates:
            x -= d.weight
            if x < 0:
                return d
        return candidates[-1]

    def fastest(self, candidates: Sequence[Deployment], stream: bool) -> Deployment:
        unmeasured = []
        best, best_t = None, float("inf")
        for d in candidates:
            s = self.of(d)
            t = s.ewma_ttft if stream else s.ewma_latency
            if t is None:
                t = s.ewma_latency if stream else s.ewma_ttft
            if t is None:
                unmeasured.append(d)
                continue
            # A little noise so near-equal deployments share the load, plus a penalty for queued work.
            t = t * (1.0 + 0.1 * self.rng.random()) * (1.0 + 0.1 * s.in_flight)
            if t < best_t:
                best, best_t = d, t
        if unmeasured:
            return self.weighted(unmeasured)
        assert best is not None
        return best

    def headroom(self, dep: Deployment, now: float) -> float:
        """Share of the tighter of the rpm/tpm limits still free (1.0 when unlimited)."""
        requests, tokens = self.of(dep).rate(now)
        free = 1.0
        if dep.rpm is not None:
            free = min(free, 1.0 - requests / dep.rpm)
        if dep.tpm is not None:
            free = min(free, 1.0 - tokens / dep.tpm)
        return free


def _unit_price(dep: Deployment, model: ModelConfig) -> float:
    p = dep.pricing or model.pricing
    return p.input_per_mtok + p.output_per_mtok
