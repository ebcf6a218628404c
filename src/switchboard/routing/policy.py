"""Reliability policies: how hard to retry, when to trip a breaker, when to hedge.

Each model carries one `Reliability`; its values come from the model's own
`retries:`, `breaker:` and `hedge:` sections, falling back to the top-level
`reliability:` section, falling back to the defaults here (see
docs/reliability.md). Parsing reads config sections through the small
duck-typed interface of `config._Section` so that errors keep their line
numbers, without this module importing the config module.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The per-request retry budget.

    `max_attempts` bounds upstream attempts for one client request across all
    deployments and fallback models (hedged attempts included); `max_per_model`
    bounds attempts on one model before its fallbacks are tried (ignored when
    there is nowhere else to go); `deadline` bounds the whole request.
    """

    max_attempts: int = 3
    max_per_model: int = 2  # so that a model's fallbacks get at least one of the default three attempts
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    deadline: float = 120.0

    def backoff(self, retry_number: int, rand: float) -> float:
        """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**n)]."""
        return rand * min(self.backoff_max, self.backoff_base * (2 ** min(retry_number, 30)))


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a deployment's circuit opens, for how long, and how it is probed back."""

    failures: int = 5            # consecutive failures that open the circuit
    failure_ratio: float = 0.5   # ...or this share of failures within `window`
    min_requests: int = 10       # ...once the window holds at least this many results
    window: float = 30.0         # seconds
    cooldown: float = 30.0       # seconds open before half-open probes
    half_open_probes: int = 1    # concurrent probe requests allowed while half-open
    max_retry_after: float = 300.0  # cap on an upstream's Retry-After


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """Start a second attempt on another deployment if the first has not answered after `delay`.

    `delay` is seconds, or None to use the model's observed latency
    `percentile` (clamped to [min_delay, max_delay]; max_delay until enough samples).
    """

    delay: float | None = None
    percentile: float = 95.0
    min_delay: float = 0.02
    max_delay: float = 2.0
    streams: bool = True


@dataclass(frozen=True, slots=True)
class Reliability:
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    hedge: HedgePolicy | None = None


DEFAULT_RELIABILITY = Reliability()


# ---------------------------------------------------------------- parsing


def read_retries(sec: Any, base: RetryPolicy) -> RetryPolicy:
    if sec is None:
        return base
    policy = replace(
        base,
        max_attempts=sec.number("max_attempts", base.max_attempts, minimum=1, maximum=100, integer=True),
        max_per_model=sec.number("max_per_model", base.max_per_model, minimum=1, maximum=100, integer=True),
        backoff_base=sec.number("backoff_base", base.backoff_base, minimum=0),
        backoff_max=sec.number("backoff_max", base.backoff_max, minimum=0),
        deadline=sec.number("deadline", base.deadline, minimum=0.001),
    )
    sec.done()
    return policy


def read_breaker(sec: Any, base: BreakerPolicy) -> BreakerPolicy:
    if sec is None:
        return base
    policy = replace(
        base,
        failures=sec.number("failures", base.failures, minimum=1, integer=True),
        failure_ratio=sec.number("failure_ratio", base.failure_ratio, minimum=0.01, maximum=1.0),
        min_requests=sec.number("min_requests", base.min_requests, minimum=1, integer=True),
        window=sec.number("window", base.window, minimum=0.1),
        cooldown=sec.number("cooldown", base.cooldown, minimum=0.01),
        half_open_probes=sec.number("half_open_probes", base.half_open_probes, minimum=1, integer=True),
        max_retry_after=sec.number("max_retry_after", base.max_retry_after, minimum=0),
    )
    sec.done()
    return policy


def read_hedge(sec: Any, base: HedgePolicy | None) -> HedgePolicy | None:
    """`hedge: {delay: 0.3}` or `{delay: p95}` turns hedging on; `{enabled: false}` turns an inherited one off."""
    if sec is None:
        return base
    start = base or HedgePolicy()
    raw_delay = sec.raw("delay")
    delay, percentile = start.delay, start.percentile
    if isinstance(raw_delay, str) and raw_delay.strip().lower().startswith("p"):
        try:
            percentile = float(raw_delay.strip()[1:])
        except ValueError:
            raise sec.error("delay", "must be seconds or a percentile such as p95") from None
        if not 0 < percentile < 100:
            raise sec.error("delay", "percentile must be between p1 and p99.9")
        delay = None
    elif raw_delay is not None:
        delay = sec.number("delay", None, minimum=0)
    policy = HedgePolicy(
        delay=delay, percentile=percentile,
        min_delay=sec.number("min_delay", start.min_delay, minimum=0),
        max_delay=sec.number("max_delay", start.max_delay, minimum=0),
        streams=sec.bool("streams", start.streams),
    )
    if sec.bool("enabled", True) is False:
        policy = None
    sec.done()
    return policy


def read_reliability(sec: Any, base: Reliability) -> Reliability:
    """A section holding `retries`, `breaker` and `hedge` subsections (the model's or the top-level one)."""
    return Reliability(
        retries=read_retries(sec.section("retries"), base.retries),
        breaker=read_breaker(sec.section("breaker"), base.breaker),
        hedge=read_hedge(sec.section("hedge"), base.hedge),
    )
