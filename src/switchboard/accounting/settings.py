"""The `accounts:` section of the config: how keys, credits and limits behave.

    accounts:
      key_cache_seconds: 0.5          # how stale a replica's view of a key may be (revocation delay)
      reservation_ttl_seconds: 900    # a crashed replica's credit holds are released after this
      default_max_output_tokens: 4096 # worst case reserved when neither request nor model caps output
      prompt_reserve_factor: 1.0      # margin on the prompt's token bound (its UTF-8 bytes) when reserving
      image_reserve_tokens: 3000      # prompt tokens reserved for each image
      document_reserve_tokens: 200000 # ...for each file (PDF), when the model's context window is unknown
      idempotency_ttl_seconds: 86400  # how long a stored response answers a retried Idempotency-Key
      response_ttl_seconds: 2592000   # how long /v1/responses keeps a stored Response (30 days, as OpenAI)
      redis_prefix: "switchboard:"    # namespace of the shared counters in Redis
      model_limits:                   # gateway-wide limits per model, across all keys
        gpt-4o: {rpm: 600, tpm: 200000}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from switchboard.config import ConfigError, GatewayConfig, _Section


@dataclass(frozen=True, slots=True)
class RateLimit:
    rpm: int | None = None
    tpm: int | None = None


@dataclass(slots=True)
class AccountSettings:
    key_cache_seconds: float = 0.5
    reservation_ttl_seconds: float = 900.0
    default_max_output_tokens: int = 4096
    prompt_reserve_factor: float = 1.0
    image_reserve_tokens: int = 3000
    document_reserve_tokens: int = 200_000
    idempotency_ttl_seconds: float = 86400.0
    response_ttl_seconds: float = 30 * 86400.0
    redis_prefix: str = "switchboard:"
    model_limits: dict[str, RateLimit] = field(default_factory=dict)


def rate_limit(sec: _Section) -> RateLimit:
    limit = RateLimit(rpm=sec.number("rpm", None, minimum=1, integer=True),
                      tpm=sec.number("tpm", None, minimum=1, integer=True))
    sec.done()
    return limit


def account_settings(config: GatewayConfig) -> AccountSettings:
    """Read `accounts:` from the config, with line-numbered errors like the rest of it."""
    raw = config.raw.get("accounts") if isinstance(config.raw, dict) else None
    if raw is None or config.doc is None:
        return AccountSettings()
    sec = _Section(config.doc, ("accounts",), raw, {})
    base = AccountSettings()
    out = AccountSettings(
        key_cache_seconds=sec.number("key_cache_seconds", base.key_cache_seconds, minimum=0, maximum=60),
        reservation_ttl_seconds=sec.number("reservation_ttl_seconds", base.reservation_ttl_seconds, minimum=1),
        default_max_output_tokens=sec.number("default_max_output_tokens", base.default_max_output_tokens,
                                             minimum=1, integer=True),
        prompt_reserve_factor=sec.number("prompt_reserve_factor", base.prompt_reserve_factor, minimum=1),
        image_reserve_tokens=sec.number("image_reserve_tokens", base.image_reserve_tokens, minimum=0, integer=True),
        document_reserve_tokens=sec.number("document_reserve_tokens", base.document_reserve_tokens, minimum=0,
                                           integer=True),
        idempotency_ttl_seconds=sec.number("idempotency_ttl_seconds", base.idempotency_ttl_seconds, minimum=1),
        response_ttl_seconds=sec.number("response_ttl_seconds", base.response_ttl_seconds, minimum=1),
        redis_prefix=sec.str("redis_prefix", base.redis_prefix) or base.redis_prefix,
    )
    limits = sec.section("model_limits")
    if limits is not None:
        for name in limits.value:
            if name not in config.models:
                raise limits.error(name, f"{name!r} is not a configured model")
            sub = limits.section(name)
            if sub is None:
                raise limits.error(name, "must be a mapping with rpm and/or tpm")
            out.model_limits[name] = rate_limit(sub)
    sec.done()
    return out


__all__ = ["AccountSettings", "ConfigError", "RateLimit", "account_settings"]
