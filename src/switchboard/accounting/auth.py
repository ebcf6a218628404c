"""Who is calling: the master key, a virtual key, or (with no master key configured) anyone.

Virtual keys exist only on a gateway with a master key (the admin who issues
them). A token shaped like a virtual key is looked up by its id and checked
against its salted hash in constant time; neither the token nor its hash is
ever logged (errors show a redacted form).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from switchboard.accounting.keys import KeyRecord, KeyStore, parse_token
from switchboard.config import Secret
from switchboard.errors import AuthenticationFailed


@dataclass(slots=True)
class Identity:
    key_id: str | None
    is_admin: bool = False
    allowed_models: frozenset[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    key: KeyRecord | None = None


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
    def __init__(self, master_key: Secret | None, keys: KeyStore | None = None) -> None:
        self._master = master_key.reveal().encode() if master_key else None
        self.admin = Identity(key_id="master", is_admin=True)
        self.keys = keys

    @property
    def open(self) -> bool:
        return self._master is None

    async def authenticate(self, headers: dict[str, str]) -> Identity:
        token = bearer_token(headers)
        if self._master is None:
            return ANONYMOUS
        if token is None:
            raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY' "
                                       "(or in an 'x-api-key' header, as Anthropic's clients do).")
        parsed = parse_token(token) if self.keys is not None else None
        if parsed is not None:
            return await self._virtual(token, *parsed)
        if hmac.compare_digest(token.encode(), self._master):
            return self.admin
        raise AuthenticationFailed(f"Incorrect API key provided: {redact(token)}.")

    async def _virtual(self, token: str, key_id: str, secret: str) -> Identity:
        assert self.keys is not None
        record = await self.keys.lookup(key_id)
        if record is None or not record.matches(secret):
            raise AuthenticationFailed(f"Incorrect API key provided: {redact(token)}.")
        if record.revoked_at is not None:
            raise AuthenticationFailed(f"The API key {record.prefix} has been revoked.", code="key_revoked")
        if record.expired():
            raise AuthenticationFailed(f"The API key {record.prefix} has expired.", code="key_expired")
        allowed = frozenset(record.allowed_models) if record.allowed_models is not None else None
        return Identity(key_id=record.key_id, allowed_models=allowed, metadata=record.metadata, key=record)

    async def require_admin(self, headers: dict[str, str]) -> Identity:
        """The master key, or 401/403: the admin API is for the operator only."""
        from switchboard.errors import PermissionDenied

        if self._master is None:
            raise PermissionDenied("The admin API needs a master key: set auth.master_key or SWITCHBOARD_MASTER_KEY.",
                                   code="admin_disabled")
        identity = await self.authenticate(headers)
        if not identity.is_admin:
            raise PermissionDenied("This endpoint needs the master key.", code="admin_only")
        return identity


def redact(token: str) -> str:
    return token[:4] + "*" * 4 + token[-2:] if len(token) > 10 else "****"
