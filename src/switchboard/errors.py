"""The gateway's error hierarchy.

Every error a client can see is a `GatewayError`: it knows its HTTP status and
renders itself in OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}``. Ingress formats other than OpenAI's (Anthropic) re-render the same
object in their own shape, so the pipeline raises one kind of error only.

Upstream failures are `UpstreamError`s: they carry a *kind* that the retry and
fallback logic acts on (is it retryable, does it call for the long-context
chain, the content-policy chain...), and map to the status the client sees.
"""

from __future__ import annotations

import re
from typing import Any

import orjson


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def to_openai(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def body(self) -> bytes:
        return orjson.dumps(self.to_openai())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class InsufficientCredit(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


# Kinds of upstream failure. The retry/fallback logic decides on these.
RATE_LIMIT = "rate_limit"
AUTH = "auth"
PAYMENT = "payment"  # the provider account is out of credit or has a billing problem (402)
CONTEXT_LENGTH = "context_length"
CONTENT_POLICY = "content_policy"
OVERLOADED = "overloaded"
SERVER = "server"
TIMEOUT = "timeout"
CONNECTION = "connection"
BAD_REQUEST = "bad_request"
NOT_FOUND = "not_found"

_RETRYABLE = frozenset({RATE_LIMIT, OVERLOADED, SERVER, TIMEOUT, CONNECTION})

# kind -> (client status, OpenAI error type, code)
_CLIENT_VIEW: dict[str, tuple[int, str, str]] = {
    RATE_LIMIT: (429, "rate_limit_error", "rate_limit_exceeded"),
    AUTH: (502, "upstream_error", "upstream_authentication_failed"),
    PAYMENT: (502, "upstream_error", "upstream_payment_required"),
    CONTEXT_LENGTH: (400, "invalid_request_error", "context_length_exceeded"),
    CONTENT_POLICY: (400, "invalid_request_error", "content_policy_violation"),
    OVERLOADED: (503, "service_unavailable", "upstream_overloaded"),
    SERVER: (502, "upstream_error", "upstream_server_error"),
    TIMEOUT: (504, "timeout", "upstream_timeout"),
    CONNECTION: (502, "upstream_error", "upstream_connection_error"),
    BAD_REQUEST: (400, "invalid_request_error", "upstream_bad_request"),
    NOT_FOUND: (404, "invalid_request_error", "upstream_model_not_found"),
}


class UpstreamError(GatewayError):
    """A provider answered with an error, or could not be reached."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        status, type_, code = _CLIENT_VIEW.get(kind, _CLIENT_VIEW[SERVER])
        super().__init__(message, param=param, code=code, status=status)
        self.type = type_
        self.kind = kind
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        if retry_after is not None and kind == RATE_LIMIT:
            self.headers["retry-after"] = str(max(1, int(retry_after + 0.999)))

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


# Phrases, not words: Anthropic's max_tokens-vs-thinking refusal links "#max-tokens-and-context-window-size",
# which is no reason to move to a longer-context model.
_TOO_LONG = re.compile(r"context[ _]window|context[ _]length|maximum context|too many (input )?tokens|"
                       r"(prompt|input) (is )?too long|exceeds the maximum number of tokens")


def kind_for_status(status: int, message: str = "") -> str:
    """Classify an upstream HTTP status (and message) into an error kind."""
    text = message.lower()
    if status == 429:
        return RATE_LIMIT
    if status in (401, 403):
        return AUTH
    if status == 402:
        return PAYMENT
    if status == 404:
        return NOT_FOUND
    if status in (400, 413, 422):
        if _TOO_LONG.search(text):
            return CONTEXT_LENGTH
        if "content" in text and ("policy" in text or "filter" in text or "management" in text) or "safety" in text:
            return CONTENT_POLICY
        return BAD_REQUEST
    if status in (503, 529):
        return OVERLOADED
    if status == 408 or status == 504:
        return TIMEOUT
    return SERVER
