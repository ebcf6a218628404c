"""Offline smart routing: learned routers that score how much a prompt needs the strong model.

Everything heavy is imported lazily, so ``import switchboard.routing.smart`` stays cheap
on the gateway's start-up path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .calibrate import calibrate_threshold
    from .router import GainRouter, LinearRouter, RandomRouter, ScoringRouter, load_router

__all__ = ["GainRouter", "LinearRouter", "RandomRouter", "ScoringRouter", "calibrate_threshold", "load_router"]

_EXPORTS = {
    "ScoringRouter": "router",
    "GainRouter": "router",
    "LinearRouter": "router",
    "RandomRouter": "router",
    "load_router": "router",
    "calibrate_threshold": "calibrate",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
