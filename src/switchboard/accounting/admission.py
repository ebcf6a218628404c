"""Admission and settlement: the accounting ends of a request.

`admit` runs after authentication and model resolution, before anything goes
upstream (rate limits, credit and budget reservations belong here); `settle`
runs exactly once per request when it is over, whatever the outcome, and
hands the request's record to the request log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchboard.config import ModelConfig
from switchboard.context import RequestContext

if TYPE_CHECKING:
    from switchboard.app import Gateway


class Admission:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def admit(self, ctx: RequestContext, model: ModelConfig, estimated_tokens: int,
                    max_output_tokens: int | None) -> None:
        """Refuse (by raising a `GatewayError`) or admit the request."""

    def settle(self, ctx: RequestContext) -> None:
        """Record the finished request. Must not block or raise."""
        self.gw.request_log.record(ctx.entry)
