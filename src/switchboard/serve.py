"""Running the gateway: load or discover the config, start the server, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from switchboard.config import GatewayConfig, config_from_dict, load_config

if TYPE_CHECKING:
    from switchboard.accounting.shared_limits import SharedLimits
    from switchboard.routing.shared_health import SharedBreakers

log = logging.getLogger("switchboard")


async def build_config(path: str | None, env: Mapping[str, str]) -> tuple[GatewayConfig, Any]:
    """The config to serve, and the in-process mock upstream when running the demo (else None)."""
    if path:
        return load_config(path, env), None
    from switchboard import discovery
    from switchboard.providers.registry import ADAPTERS

    models, notes = discovery.discover_env(env, set(ADAPTERS))
    ollama = await discovery.discover_ollama()
    if ollama:
        models.update(discovery.ollama_models(ollama))
        notes.append(f"Ollama on localhost:11434: {', '.join(ollama)}")
    if models:
        config = config_from_dict({"models": models}, env, source="<discovered from environment>")
        config.notes = notes
        return config, None
    from switchboard.testing.mock_upstream import MockUpstream

    mock = MockUpstream(discovery.demo_behaviours())
    port = await mock.start("127.0.0.1", 0)
    config = config_from_dict({"models": discovery.demo_models(f"http://127.0.0.1:{port}/v1")}, env,
                              source="<demo: simulated models>")
    for model in config.models.values():
        model.simulated = True
    config.notes = [f"No provider keys found: serving the DEMO. {', '.join(config.models)} are SIMULATED "
                    f"models answered by the built-in mock upstream on 127.0.0.1:{port}, not real LLMs."]
    return config, mock


async def serve(config_path: str | None, host: str | None = None, port: int | None = None,
                env: Mapping[str, str] | None = None, ready_file: str | None = None, *,
                sock: Any = None, on_ready: Callable[[int], None] | None = None,
                shared_limits: SharedLimits | None = None, shared_breakers: SharedBreakers | None = None) -> None:
    """Serve until SIGINT/SIGTERM. `sock`: an already listening socket, `shared_limits` and
    `shared_breakers` the tables the workers share (a worker of `serve --workers N`)."""
    from switchboard.app import Gateway
    from switchboard.http.server import HttpServer

    t0 = time.perf_counter()
    env = os.environ if env is None else env
    config, mock = await build_config(config_path, env)
    if host:
        config.server.host = host
    if port is not None:
        config.server.port = port
    for note in config.notes:
        log.warning(note) if "SIMULATED" in note else log.info("found %s", note)
    if config.master_key is None:
        log.warning("No master key configured (auth.master_key or SWITCHBOARD_MASTER_KEY): the gateway is open to anyone who can reach it.")
    gateway = Gateway(config, shared_limits=shared_limits, shared_breakers=shared_breakers)
    await gateway.start()
    tune_gc()
    server = HttpServer(gateway.handle, max_body_bytes=config.server.max_body_bytes,
                        read_timeout=config.server.read_timeout, idle_timeout=config.server.idle_timeout,
                        write_timeout=config.server.write_timeout, error_body=gateway.error_body)
    bound = await server.start(config.server.host, config.server.port, sock=sock)
    log.info("switchboard listening on http://%s:%d with %d model(s) [%s] (ready in %.0f ms)",
             config.server.host, bound, len(config.models), ", ".join([*config.models, *config.wildcards]),
             (time.perf_counter() - t0) * 1000)
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(str(bound))
    if on_ready is not None:
        on_ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight requests (up to %gs)", config.server.drain_seconds)
    await server.shutdown(config.server.drain_seconds, on_cut_off=gateway.cut_off)
    await gateway.close()
    if mock is not None:
        await mock.close()
    log.info("stopped")


def tune_gc() -> None:
    """Keep the garbage collector's pauses out of request latency.

    Everything alive once the gateway has started (modules, config, routes) lives
    until exit: `gc.freeze()` moves it out of the collector's sight, so full
    collections only walk what requests allocate. A larger first-generation
    threshold makes young collections rarer; request objects are freed by
    reference counting anyway, cycles are rare on the hot path.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(7000, 20, 20)


def run(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
