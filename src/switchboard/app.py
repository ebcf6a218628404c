"""The gateway application: built from a config, answering HTTP requests.

`Gateway` owns the long-lived parts (HTTP client pool, providers, storage,
request log, attempt planner) and a route table; `handle` is the one handler
the HTTP server calls. Nothing is global: two gateways can live in one process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from switchboard.accounting.admission import Admission
from switchboard.accounting.auth import Authenticator
from switchboard.accounting.keys import KeyStore
from switchboard.accounting.settings import account_settings
from switchboard.accounting.request_log import RequestLog
from switchboard.accounting.shared_limits import SharedLimits
from switchboard.config import GatewayConfig
from switchboard.errors import GatewayError, MethodNotAllowed, NotFound
from switchboard.http.client import HttpClient
from switchboard.http.server import Request, Response, StreamResponse, openai_error_body
from switchboard.metrics import GatewayMetrics, metrics_endpoint
from switchboard.pipeline import Pipeline
from switchboard.providers.registry import ProviderRegistry
from switchboard.routing.attempts import AttemptPlanner
from switchboard.routing.auto import AutoRouter, parse_routers
from switchboard.routing.executor import Executor
from switchboard.routing.shared_health import SharedBreakers
from switchboard.storage.base import Storage
from switchboard.storage.redis_state import open_redis
from switchboard.storage.responses import ResponseStore
from switchboard.wildcards import WildcardModels

log = logging.getLogger("switchboard")
_ANTHROPIC_PATH = "/v1/messages"  # its errors, even those no handler raises, take Anthropic's shape

Route = Callable[["Gateway", Request], Awaitable[Response | StreamResponse]]


def open_storage(config: GatewayConfig) -> Storage:
    if config.storage.database_url is not None:
        from switchboard.storage.postgres import PostgresStorage

        return PostgresStorage(config.storage.database_url.reveal())
    from switchboard.storage.sqlite import SQLiteStorage

    return SQLiteStorage(config.storage.sqlite_path)


class Gateway:
    def __init__(self, config: GatewayConfig, *, storage: Storage | None = None,
                 shared_limits: SharedLimits | None = None, shared_breakers: SharedBreakers | None = None) -> None:
        self.config = config
        # the tables the workers of `serve --workers N` share without Redis, or None
        self.shared_limits = shared_limits
        self.shared_breakers = shared_breakers
        self.client = HttpClient()
        self.providers = ProviderRegistry(self.client)
        self.storage = storage or open_storage(config)
        self.redis = open_redis(config)  # shared counters across replicas, or None
        self.response_store = ResponseStore(self.storage, account_settings(config).response_ttl_seconds)
        self.request_log = RequestLog(self.storage, flush_seconds=config.storage.log_flush_seconds)
        self.auth = Authenticator(config.master_key, KeyStore(self.storage, account_settings(config).key_cache_seconds))
        self.planner = AttemptPlanner(config)
        self.metrics = GatewayMetrics(known=lambda name: name in self.config.models or name in self.routers
                                      or name in self.wildcards.made)
        self.executor = Executor(self)
        self.wildcards = WildcardModels(config.wildcards, self.executor.health.register)
        self.admission = Admission(self)
        self.pipeline = Pipeline(self)
        self.routers = {name: AutoRouter(rc, config) for name, rc in parse_routers(config).items()}
        from switchboard.observers import build_observers

        self.observers = build_observers(self)  # record mode, shadow traffic
        self.started_at = int(time.time())
        self.ready = False
        self.shutting_down = False  # the drain ran out: requests still running are being cut off
        self.routes: dict[str, dict[str, Route]] = {}
        self.prefix_routes: list[tuple[str, dict[str, Route]]] = []
        self._install_routes()

    def _install_routes(self) -> None:
        from switchboard.api import openai, system

        self.add_route("POST", "/v1/chat/completions", openai.chat_completions)
        self.add_route("POST", "/chat/completions", openai.chat_completions)
        self.add_route("POST", "/v1/completions", openai.completions)
        self.add_route("POST", "/completions", openai.completions)
        self.add_route("POST", "/v1/embeddings", openai.embeddings)
        self.add_route("POST", "/embeddings", openai.embeddings)
        self.add_route("GET", "/v1/models", openai.list_models)
        self.add_route("GET", "/v1/models/", openai.retrieve_model, prefix=True)
        self.add_route("GET", "/health", system.health)
        self.add_route("GET", "/ready", system.ready)
        self.add_route("GET", "/openapi.json", system.openapi)
        from switchboard.api import admin

        admin.install(self)
        from switchboard.api import dashboard

        dashboard.install(self)  # /ui and /admin/dashboard/*
        self.add_route("GET", "/metrics", metrics_endpoint)
        from switchboard.api import anthropic as anthropic_api

        self.add_route("POST", "/v1/messages", anthropic_api.messages)
        self.add_route("POST", "/v1/messages/count_tokens", anthropic_api.count_tokens)
        from switchboard.api import responses

        self.add_route("POST", "/v1/responses", responses.create)
        self.add_route("POST", "/responses", responses.create)
        self.add_route("POST", "/v1/responses/input_tokens", responses.count_input_tokens)
        for method in ("GET", "DELETE", "POST"):  # retrieve, delete, input_items; cancel is refused
            self.add_route(method, "/v1/responses/", responses.stored, prefix=True)
        from switchboard.routing import feedback

        feedback.install(self)  # /v1/feedback and its export as router training data

    def add_route(self, method: str, path: str, handler: Route, *, prefix: bool = False) -> None:
        if prefix:
            for p, table in self.prefix_routes:
                if p == path:
                    table[method] = handler
                    return
            self.prefix_routes.append((path, {method: handler}))
        else:
            self.routes.setdefault(path, {})[method] = handler

    def virtual_models(self) -> list[str]:
        """Names clients may call that are not configured models (routers such as `auto`)."""
        return list(self.routers)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for router in self.routers.values():
            await loop.run_in_executor(None, router.load)
        await self.storage.start()
        if self.redis is not None:
            await self.redis.start()
        await self.admission.start()
        self.request_log.start()
        await self.executor.start()
        for observer in self.observers:
            await observer.start()
        self.ready = True

    def cut_off(self) -> None:
        """The server's drain ran out: requests cancelled from now on are logged as cut off, not as hang-ups."""
        self.shutting_down = True

    async def close(self) -> None:
        self.ready = False
        for observer in self.observers:
            await observer.close()
        await self.executor.close()
        await self.admission.close()
        await self.request_log.close()
        await self.client.close()
        await self.storage.close()
        if self.redis is not None:
            await self.redis.close()

    async def handle(self, request: Request) -> Response | StreamResponse:
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        table = self.routes.get(path)
        if table is None:
            for prefix, t in self.prefix_routes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    table = t
                    break
        try:
            if table is None:
                raise NotFound(f"Unknown path {request.method} {request.path}.")
            handler = table.get(request.method) or (table.get("GET") if request.method == "HEAD" else None)
            if handler is None:
                raise MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}; "
                                       f"use {', '.join(sorted(table))}.")
            return await handler(self, request)
        except GatewayError as exc:
            return Response(exc.status, self.error_body(exc.status, exc.message, path) if path.startswith(
                _ANTHROPIC_PATH) else exc.body(), dict(exc.headers))

    @staticmethod
    def error_body(status: int, message: str, path: str) -> bytes:
        """An error outside any handler (unknown method, body too large...) in the shape of the API at `path`:
        Anthropic's under /v1/messages, OpenAI's everywhere else."""
        if path.startswith(_ANTHROPIC_PATH):
            from switchboard.core.anthropic_format import error_payload

            return orjson.dumps(error_payload(status, message))
        return openai_error_body(status, message, path)
