"""Who is calling: the master key, or (with no master key configured) an open gateway."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from switchboard.config import Secret
from switchboard.errors import AuthenticationFailed


@dataclass(slots=True)
class Identity:
    key_id: str | None
    is_admin: bool = False
    allowed_models: frozenset[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


ANONYMOUS = Identity(key_id=None, is_admin=False)


def bearer_token(headers: dict[str, str]) -> str | None:
    """The API key from `Authorization: Bearer ...`, or from `x-api-key` / `api-key` as Anthropic and Azure clients send it."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return headers.get("x-api-key") or headers.get("api-key") or None


class Authenticator:
    def __init__(self, master_key: Secret | None) -> None:
        self._master = master_key.reveal().encode() if master_key else None
        self.admin = Identity(key_id="master", is_admin=True)

    @property
    def open(self) -> bool:
        return self._master is None

    async def authenticate(self, headers: dict[str, str]) -> Identity:
        token = bearer_token(headers)
        if self._master is None:
            return ANONYMOUS
        if token is None:
            raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")
        if hmac.compare_digest(token.encode(), self._master):
            return self.admin
        raise AuthenticationFailed(f"Incorrect API key provided: {redact(token)}.")


def redact(token: str) -> str:
    return token[:4] + "*" * 4 + token[-2:] if len(token) > 10 else "****"
