"""Money as integers: nano-dollars (1e-9 USD).

Prices are configured in dollars per million tokens, so a token costs
`price * 1000` nano-dollars: an exact integer for every real price list. The
ledger, reservations and budgets add integers, never floats, and reports round
exact sums to the cent.
"""

from __future__ import annotations

from switchboard.config import Pricing

NANOS_PER_USD = 1_000_000_000


def to_nanos(usd: float) -> int:
    return int(round(usd * NANOS_PER_USD))


def to_usd(nanos: int) -> float:
    return nanos / NANOS_PER_USD


MAX_NANOS = 10**18  # one amount or balance: $1,000,000,000, well inside the storage's 64-bit integers


def worst_case_nanos(pricing: Pricing, prompt_tokens: int, max_output_tokens: int) -> int:
    """What a request can cost at most: every prompt token uncached, every allowed output token used (capped at
    `MAX_NANOS`, which no account can hold, so an absurd `max_tokens` is a 402, not an overflow)."""
    return min(MAX_NANOS, to_nanos(pricing.cost(prompt_tokens, max_output_tokens, 0)))
