"""Virtual API keys: issued by the admin, stored only as salted hashes.

A key looks like ``sk-sb-<id>-<secret>``. The id (12 hex characters) is
public: it names the key in the admin API, the request log and the ledger,
and ``sk-sb-<id>`` is the visible prefix an operator recognises. The secret
is shown once, at creation; the database keeps ``sha256(salt + secret)`` and
the check is a constant-time comparison. (A fast hash is right here: the
secret is 256 random bits, so there is nothing to brute-force.)

Each replica caches a key's record for `key_cache_seconds` (0.5 s by
default) and then reads it again, so an update or a revocation on any replica
is in force on every replica within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchboard.storage.base import Steps, Storage, execute, single

TOKEN_PREFIX = "sk-sb-"
_ID_LEN = 12
PERIODS = ("day", "month")


@dataclass(slots=True)
class Budget:
    """A spend cap for one account over a calendar period (UTC); a soft one only warns."""

    account: str
    period: str
    cap: int  # nano-dollars
    soft: bool = False


@dataclass(slots=True)
class KeyRecord:
    key_id: str
    name: str
    prefix: str
    salt: str
    hash: str
    team: str | None = None
    allowed_models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    model_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    expires_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    revoked_at: float | None = None
    # What admission needs besides the key itself, read together with it.
    prepaid_accounts: list[str] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)

    @property
    def account(self) -> str:
        return f"key:{self.key_id}"

    @property
    def team_account(self) -> str | None:
        return f"team:{self.team}" if self.team else None

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(hash_secret(self.salt, secret), self.hash)

    def public(self) -> dict[str, Any]:
        """The key as the admin API shows it: never the hash, never the salt."""
        return {
            "id": self.key_id, "name": self.name, "prefix": self.prefix, "team": self.team,
            "allowed_models": self.allowed_models, "rpm": self.rpm, "tpm": self.tpm,
            "max_parallel": self.max_parallel, "model_limits": self.model_limits,
            "expires_at": self.expires_at, "metadata": self.metadata, "created_at": self.created_at,
            "updated_at": self.updated_at, "revoked_at": self.revoked_at,
            "status": "revoked" if self.revoked_at else ("expired" if self.expired() else "active"),
        }

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(salt.encode() + secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a virtual key token, or None if it is not shaped like one."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX):].partition("-")
    if not sep or len(key_id) != _ID_LEN or not secret:
        return None
    return key_id, secret


def new_token() -> tuple[str, str, str]:
    """(key id, secret, full token)."""
    key_id = secrets.token_hex(_ID_LEN // 2)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{TOKEN_PREFIX}{key_id}-{secret}"


_KEY_COLUMNS = ("key_id", "name", "prefix", "salt", "hash", "team", "allowed_models", "rpm", "tpm",
                "max_parallel", "model_limits", "expires_at", "metadata", "created_at", "updated_at", "revoked_at")
_JSON_COLUMNS = ("allowed_models", "model_limits", "metadata")
EDITABLE = ("name", "team", "allowed_models", "rpm", "tpm", "max_parallel", "model_limits", "expires_at", "metadata")


def _record(row: dict[str, Any]) -> KeyRecord:
    data = {k: row[k] for k in _KEY_COLUMNS}
    for col in _JSON_COLUMNS:
        data[col] = orjson.loads(data[col]) if data[col] is not None else None
    data["model_limits"] = data["model_limits"] or {}
    data["metadata"] = data["metadata"] or {}
    return KeyRecord(**data)


def _db_value(col: str, value: Any) -> Any:
    if col in _JSON_COLUMNS:
        return orjson.dumps(value).decode() if value is not None else None
    if col == "expires_at" and value is not None:
        return float(value)
    return value


class KeyStore:
    """Keys in the database, and each replica's short-lived cache of them."""

    def __init__(self, storage: Storage, cache_seconds: float = 0.5) -> None:
        self.storage = storage
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._loading: dict[str, asyncio.Future] = {}

    # ------------------------------------------------------------ admin

    async def create(self, fields: dict[str, Any], *, prepaid: bool = False) -> tuple[KeyRecord, str]:
        key_id, secret, token = new_token()
        now = time.time()
        salt = secrets.token_hex(16)
        values = {c: None for c in _KEY_COLUMNS}
        values.update({c: fields.get(c) for c in EDITABLE})
        values.update(key_id=key_id, prefix=f"{TOKEN_PREFIX}{key_id}", salt=salt, hash=hash_secret(salt, secret),
                      created_at=now, updated_at=now, name=fields.get("name") or key_id)

        def insert() -> Steps[None]:
            yield execute(f"INSERT INTO api_keys ({', '.join(_KEY_COLUMNS)}) VALUES ({', '.join('?' * len(_KEY_COLUMNS))})",
                          *(_db_value(c, values[c]) for c in _KEY_COLUMNS))
            yield execute("INSERT INTO accounts (account, prepaid, balance, reserved, updated_at) VALUES (?, ?, 0, 0, ?) "
                          "ON CONFLICT (account) DO NOTHING", f"key:{key_id}", 1 if prepaid else 0, now)

        await self.storage.transact(insert())
        record = await self.get(key_id)
        assert record is not None
        return record, token

    async def get(self, key_id: str) -> KeyRecord | None:
        row = await self.storage.fetchone("SELECT * FROM api_keys WHERE key_id = ?", key_id)
        return _record(row) if row else None

    async def list(self, *, team: str | None = None, include_revoked: bool = False) -> list[KeyRecord]:
        sql, args = "SELECT * FROM api_keys", []
        where = []
        if team:
            where.append("team = ?")
            args.append(team)
        if not include_revoked:
            where.append("revoked_at IS NULL")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_record(r) for r in await self.storage.fetchall(sql + " ORDER BY created_at", *args)]

    async def update(self, key_id: str, fields: dict[str, Any]) -> KeyRecord | None:
        changes = {c: fields[c] for c in EDITABLE if c in fields}
        if changes:
            sets = ", ".join(f"{c} = ?" for c in changes)
            update = execute(f"UPDATE api_keys SET {sets}, updated_at = ? WHERE key_id = ?",
                             *(_db_value(c, v) for c, v in changes.items()), time.time(), key_id)
            n = await self.storage.transact(single(update))
            if n == 0:
                return None
        self.forget(key_id)
        return await self.get(key_id)

    async def revoke(self, key_id: str) -> KeyRecord | None:
        now = time.time()
        await self.storage.transact(single(execute(
            "UPDATE api_keys SET revoked_at = ?, updated_at = ? WHERE key_id = ? AND revoked_at IS NULL", now, now, key_id)))
        self.forget(key_id)
        return await self.get(key_id)

    def forget(self, key_id: str) -> None:
        self._cache.pop(key_id, None)

    # ------------------------------------------------------------ hot path

    async def lookup(self, key_id: str) -> KeyRecord | None:
        """The key with its credit and budget policy, from this replica's cache when fresh enough."""
        hit = self._cache.get(key_id)
        if hit is not None and time.monotonic() - hit[0] < self.cache_seconds:
            return hit[1]
        pending = self._loading.get(key_id)
        if pending is None:  # one read per key at a time, however many requests wait for it
            pending = self._loading[key_id] = asyncio.get_running_loop().create_task(self._load(key_id))
            pending.add_done_callback(lambda _: self._loading.pop(key_id, None))
        return await asyncio.shield(pending)

    async def _load(self, key_id: str) -> KeyRecord | None:
        fetched = time.monotonic()
        record = await self.get(key_id)
        if record is not None:
            accounts = [record.account] + ([record.team_account] if record.team_account else [])
            marks = ", ".join("?" * len(accounts))
            prepaid = await self.storage.fetchall(f"SELECT account FROM accounts WHERE prepaid = 1 AND account IN ({marks})",
                                                  *accounts)
            record.prepaid_accounts = sorted(r["account"] for r in prepaid)
            rows = await self.storage.fetchall(f"SELECT * FROM budgets WHERE account IN ({marks})", *accounts)
            record.budgets = [Budget(r["account"], r["period"], int(r["cap"]), bool(r["soft"])) for r in rows]
        self._cache[key_id] = (fetched, record)
        if len(self._cache) > 100_000:
            self._cache.clear()
        return record
