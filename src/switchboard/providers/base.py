"""The one narrow interface every provider adapter implements.

An adapter turns a canonical (OpenAI-shaped) chat request into its provider's
wire format, sends it on the shared pooled client, and turns the answer back:
a whole `chat.completion` dict from `chat`, or `chat.completion.chunk` dicts
from `chat_stream`, the last of which carries `usage`. Failures are raised as
`UpstreamError` with a kind the retry and fallback logic understands.
Adding a provider means adding one module and one registry line; the core
never changes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, ClassVar

import orjson

from switchboard import errors
from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import UpstreamError
from switchboard.http.client import (ClientResponse, ConnectError, ConnectTimeout, HttpClient,
                                     HttpClientError, ReadTimeout)
from switchboard.providers.local_stops import Chunks, StopLimits, StopPlan, plan_stops


# What reading an answer of an unexpected shape raises (a string where the API has a list, a word for a number).
MALFORMED = (AttributeError, TypeError, ValueError, KeyError, IndexError)


def malformed_answer(deployment: Deployment, exc: Exception) -> UpstreamError:
    """An upstream answer the adapter could not read: the upstream's failure, a 502 that may fail over, not an
    internal error of the gateway. Logged with its traceback, in case the adapter is the one at fault."""
    logging.getLogger("switchboard").warning("%s sent an answer in an unexpected shape", deployment.id, exc_info=exc)
    return UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not in the provider's format "
                                        f"({exc.__class__.__name__}: {exc})"[:300])


class Provider:
    kind: ClassVar[str] = ""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    async def chat(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        raise NotImplementedError

    def chat_stream(self, request: ChatRequest, deployment: Deployment) -> Chunks:
        """The answer's chunks, cut at the stop sequences the gateway applies itself (`stop_plan`)."""
        stops = self.stop_plan(request, deployment)
        return stops.cut_stream(self.stream_chunks(request, deployment, stops))

    def stream_chunks(self, request: ChatRequest, deployment: Deployment, stops: StopPlan) -> Chunks:
        """The upstream's answer as chunks, asked with the stop sequences `stops.upstream`."""
        raise NotImplementedError

    async def embeddings(self, body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        raise UpstreamError(errors.BAD_REQUEST, f"provider {self.kind!r} does not serve embeddings")

    def stop_limits(self, deployment: Deployment) -> StopLimits:
        """What the deployment's upstream takes of a request's stop sequences (adapters declare their provider's
        documented limit); the gateway applies the others itself (`providers.local_stops`)."""
        return StopLimits()

    def stop_plan(self, request: ChatRequest, deployment: Deployment) -> StopPlan:
        """The request's stop sequences split between the upstream and the gateway; a deployment's
        `max_stop_sequences` (a server that takes more or fewer than its provider kind) overrides the count."""
        limits = self.stop_limits(deployment)
        most = deployment.options.get("max_stop_sequences")
        if most is not None:
            limits = replace(limits, most=most)
        return plan_stops(request.body, limits)

    # -- shared plumbing for adapters

    def headers(self, deployment: Deployment) -> dict[str, str]:
        """JSON with the key as a bearer token, plus the deployment's extra headers (most providers' way)."""
        headers = {"content-type": "application/json"}
        if deployment.api_key is not None:
            headers["authorization"] = "Bearer " + deployment.api_key.reveal()
        extra = deployment.options.get("headers")
        if extra:
            headers.update(extra)
        return headers

    async def open(self, deployment: Deployment, method: str, url: str, headers: dict[str, str],
                   body: bytes = b"") -> ClientResponse:
        """Send a request; transport failures become `UpstreamError`s, error statuses too."""
        try:
            response = await self.client.request(method, url, headers=headers, body=body, timeouts=deployment.timeouts)
        except ConnectTimeout as exc:
            raise UpstreamError(errors.TIMEOUT, f"{deployment.id}: {exc}") from None
        except ConnectError as exc:
            raise UpstreamError(errors.CONNECTION, f"{deployment.id}: {exc}") from None
        except ReadTimeout:
            raise UpstreamError(errors.TIMEOUT, f"{deployment.id}: no response within {_limits(deployment)}") from None
        except HttpClientError as exc:
            raise UpstreamError(errors.CONNECTION, f"{deployment.id}: {exc}") from None
        except TimeoutError:
            raise UpstreamError(errors.TIMEOUT, f"{deployment.id}: timed out") from None
        if response.status >= 400:
            body_bytes = await read_body(response, deployment)
            raise self.error_from_response(response.status, body_bytes, response.headers, deployment)
        return response

    async def send_json(self, deployment: Deployment, url: str, headers: dict[str, str], payload: Any) -> Any:
        response = await self.open(deployment, "POST", url, headers, orjson.dumps(payload))
        data = await read_body(response, deployment)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream sent invalid JSON") from None

    def error_from_response(self, status: int, body: bytes, headers: dict[str, str], deployment: Deployment) -> UpstreamError:
        """Map an upstream error response to an `UpstreamError`; adapters refine the message parsing."""
        message = error_message(body) or f"upstream returned HTTP {status}"
        return UpstreamError(errors.kind_for_status(status, message), f"{deployment.id}: {message}",
                             upstream_status=status, retry_after=retry_after(headers))


async def read_body(response: ClientResponse, deployment: Deployment) -> bytes:
    try:
        return await response.read()
    except ReadTimeout:
        raise UpstreamError(errors.TIMEOUT, f"{deployment.id}: upstream stalled while sending its body") from None
    except HttpClientError as exc:
        raise UpstreamError(errors.CONNECTION, f"{deployment.id}: {exc}") from None


def _limits(deployment: Deployment) -> str:
    """The timeouts a read may have hit: the gap between reads, or the whole exchange's."""
    return f"{deployment.timeouts.read:g}s (read timeout) or the {deployment.timeouts.total:g}s total timeout"


async def iter_body(response: ClientResponse, deployment: Deployment) -> AsyncIterator[bytes]:
    """The response body as it arrives, with transport failures as `UpstreamError`s."""
    try:
        async for chunk in response.iter_bytes():
            yield chunk
    except ReadTimeout:
        raise UpstreamError(errors.TIMEOUT,
                            f"{deployment.id}: stream stalled: no data within {_limits(deployment)}") from None
    except HttpClientError as exc:
        raise UpstreamError(errors.CONNECTION, f"{deployment.id}: stream broke off: {exc}") from None


async def sse_json(response: ClientResponse, deployment: Deployment) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """The JSON-object events of an SSE body, as (event name, object); invalid JSON is an upstream error."""
    from switchboard.http.sse import SSEDecoder

    decoder = SSEDecoder()
    async for raw in iter_body(response, deployment):
        for name, data in decoder.feed(raw):
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamError(errors.SERVER, f"{deployment.id}: invalid JSON in stream") from None
            if isinstance(event, dict):
                yield name, event


def error_message(body: bytes) -> str:
    """The human message inside the usual error JSON shapes, or the raw text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip()
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("Message")
            if isinstance(msg, str):
                return msg
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return data["message"]
    return body[:500].decode("utf-8", "replace").strip()


def retry_after(headers: dict[str, str]) -> float | None:
    """The seconds an upstream asks us to wait (`retry-after-ms`, else `retry-after` in seconds or as a date);
    None when it asks nothing readable (a value such as `inf` is not a wait)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            seconds = float(value) / 1000.0
            if math.isfinite(seconds):
                return max(0.0, seconds)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        from email.utils import parsedate_to_datetime
        import time

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
