"""`switchboard serve --workers N`: N gateway processes sharing one listening socket.

Why processes: one Python process serves on one core (the GIL), so a host
with more cores runs more workers. The parent binds and listens once, then
forks the workers before any event loop exists; every worker accepts from the
same socket (the kernel hands each connection to one of them) and runs the
ordinary single-process `serve` on it. The parent only supervises: it
forwards SIGINT/SIGTERM so that every worker drains its in-flight requests,
and restarts a worker that died unexpectedly.

Shared state: credit and budget reservations are conditional updates in the
database the workers share (the SQLite file or Postgres), so those caps are
exact across workers. Rate limits and parallel caps are counted in Redis when
`storage.redis_url` is set (exact across hosts), else in a table the parent
maps into shared memory before forking (`SharedLimits`: exact across the
workers of this host). Breaker transitions (a deployment cooling down, or
back) go the same two ways: through Redis, else through `SharedBreakers`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from switchboard.accounting.shared_limits import SharedLimits
    from switchboard.routing.shared_health import SharedBreakers

log = logging.getLogger("switchboard")


def listen(host: str, port: int, backlog: int = 4096) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def serve_workers(config_path: str | None, workers: int, host: str | None = None, port: int | None = None,
                  env: Mapping[str, str] | None = None, ready_file: str | None = None) -> int:
    """Bind, fork `workers` workers, supervise them until SIGINT/SIGTERM; returns the exit code."""
    from switchboard.config import ServerConfig, load_config

    env = os.environ if env is None else env
    config = load_config(config_path, env) if config_path else None
    server = config.server if config is not None else ServerConfig()
    host = host or server.host
    port = server.port if port is None else port
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    shared_limits = shared_breakers = None
    if config is None or config.storage.redis_url is None:
        from switchboard.accounting.shared_limits import SharedLimits
        from switchboard.routing.shared_health import SharedBreakers

        shared_limits = SharedLimits()
        # room for the deployments of models that wildcards make later (entries are taken on transitions only)
        deployments = (sum(len(m.deployments) for m in config.models.values()) + 256 * len(config.wildcards)
                       if config else 32)
        shared_breakers = SharedBreakers(deployments)
    log.info("switchboard: %d workers on http://%s:%d (rate limits and breakers shared %s)", workers, host, bound,
             "in Redis" if shared_limits is None else "in memory by the workers")

    ready_r, ready_w = os.pipe()
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                os.close(ready_r)
            except OSError:
                pass  # closed already: a worker restarted after start-up
            code = 1
            try:
                code = _worker(config_path, host, bound, env, sock, ready_w, index, shared_limits, shared_breakers)
            finally:
                os._exit(code)
        children[pid] = index

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        sock.close()  # our copy: once the workers close theirs, new connections are refused, not left to hang
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for i in range(workers):
        spawn(i)
    os.close(ready_w)
    ready_w = -1
    ready = 0
    while ready < workers:  # each worker writes one byte once it serves
        chunk = os.read(ready_r, workers)
        if not chunk:
            break
        ready += len(chunk)
    os.close(ready_r)
    if ready < workers:  # a worker that cannot start will not start on a retry either
        log.error("only %d of %d workers started: stopping", ready, workers)
        stop(signal.SIGTERM, None)
        while children:
            try:
                children.pop(os.wait()[0], None)
            except ChildProcessError:
                break
        sock.close()
        return 1
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(str(bound))
    restarts: list[float] = []
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None or stopping:
            continue
        code = os.waitstatus_to_exitcode(status)
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > 5 * workers:
            log.error("workers keep dying (%d restarts in a minute): giving up", len(restarts))
            stop(signal.SIGTERM, None)
            continue
        log.error("worker %d (pid %d) exited with %d: restarting it", index, pid, code)
        spawn(index)
    sock.close()
    return 0


def _worker(config_path: str | None, host: str, port: int, env: Mapping[str, str], sock: socket.socket,
            ready_w: int, index: int, shared_limits: SharedLimits | None,
            shared_breakers: SharedBreakers | None) -> int:
    from switchboard.serve import run, serve

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    def on_ready(_port: int) -> None:
        try:
            os.write(ready_w, b"1")
            os.close(ready_w)
        except OSError:
            pass  # a restarted worker: nobody is waiting for it

    try:
        run(serve(config_path, host, port, env, sock=sock, on_ready=on_ready, shared_limits=shared_limits,
                  shared_breakers=shared_breakers))
    except Exception:
        log.exception("worker %d failed", index)
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0
