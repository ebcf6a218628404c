"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from switchboard.http.server import Request, Response

if TYPE_CHECKING:
    from switchboard.app import Gateway


async def health(gw: Gateway, request: Request) -> Response:
    return Response(200, b'{"status":"ok"}')


async def ready(gw: Gateway, request: Request) -> Response:
    storage_ok = await gw.storage.ping() if gw.ready else False
    ok = gw.ready and storage_ok
    body = {"status": "ready" if ok else "not ready", "config": gw.config.source,
            "models": len(gw.config.models), "storage": {"backend": gw.storage.name, "reachable": storage_ok}}
    return Response(200 if ok else 503, orjson.dumps(body))


async def openapi(gw: Gateway, request: Request) -> Response:
    from switchboard.api.openapi import document

    return Response(200, orjson.dumps(document(gw)))
