"""Traffic observers: parts of the gateway that watch served requests without touching them.

Record mode (`switchboard.recording`) and shadow traffic (`switchboard.evals.shadow`)
both need every successful chat request with its answer. The pipeline hands them
over with `notify` one event-loop turn after the answer is final, so an observer
never delays the caller: it may only schedule work (a queue put, a task), never
await or block. Nothing is built unless its config section is present.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from switchboard.app import Gateway
    from switchboard.config import GatewayConfig
    from switchboard.context import RequestContext
    from switchboard.core.request import ChatRequest

log = logging.getLogger("switchboard.observers")


class TrafficObserver(Protocol):
    def observe(self, request: ChatRequest, ctx: RequestContext, text: str) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def build_observers(gateway: Gateway) -> list[TrafficObserver]:
    """The observers the config asks for (sections `record` and `shadow`), in that order."""
    raw = gateway.config.raw or {}
    observers: list[TrafficObserver] = []
    if raw.get("record") is not None:
        from switchboard.recording import Recorder

        observers.append(Recorder.from_config(gateway.config))
    if raw.get("shadow") is not None:
        from switchboard.evals.shadow import ShadowMirror

        observers.append(ShadowMirror.from_config(gateway))
    return observers


def notify(observers: list[TrafficObserver], request: ChatRequest, ctx: RequestContext, text: str) -> None:
    """Hand one served request to every observer; only successful ones, and a failing observer is logged, not raised."""
    if ctx.entry.status != 200:
        return
    for observer in observers:
        try:
            observer.observe(request, ctx, text)
        except Exception:
            log.exception("traffic observer %s failed", type(observer).__name__)


def section(config: GatewayConfig, name: str) -> Any:
    """A `_Section` reader over the top-level section `name`, with the config's line numbers for errors."""
    from switchboard.config import ConfigError, _Section
    from switchboard.yamlsource import Located, SourceError

    doc = config.doc if config.doc is not None else Located(config.raw, {}, config.source)
    try:
        return _Section(doc, (name,), (config.raw or {}).get(name), os.environ)
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
