"""Shared fast state for many replicas: one Redis connection pool and a key namespace.

Used when `storage.redis_url` is set, for what must be exact across replicas
but is too hot or too short-lived for the database: rate-limit windows,
parallel-request slots, cooldown state. Every key starts with `prefix`, so
several gateways (or test runs) can share one Redis.
"""

from __future__ import annotations

from typing import Any


class RedisState:
    def __init__(self, url: str, prefix: str = "switchboard:") -> None:
        self.url = url
        self.prefix = prefix
        self.client: Any = None

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("storage.redis_url needs redis: pip install 'switchboard[redis]'") from exc
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError, TimeoutError

        # A blocking pool: under a burst, callers wait for a free connection instead of failing. A pooled
        # connection that Redis closed (a restart) fails once and is retried on a fresh one, so a restart costs
        # only the requests made while Redis is really down.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=64, timeout=10, retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
            retry_on_error=[ConnectionError, TimeoutError])
        self.client = aioredis.Redis(connection_pool=pool)
        await self.client.ping()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:
            return False

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


def open_redis(config: Any) -> RedisState | None:
    """The shared Redis of a config (`storage.redis_url`), or None to keep counters in memory."""
    if config.storage.redis_url is None:
        return None
    from switchboard.accounting.settings import account_settings

    return RedisState(config.storage.redis_url.reveal(), account_settings(config).redis_prefix)
