"""Stored Responses: what `/v1/responses` keeps for `previous_response_id` and `GET /v1/responses/{id}`.

Each stored Response keeps only its own turn (the input messages it added and
the assistant's answer, in canonical form) and its parent's id, so a long
conversation costs its length, not its length squared; a follow-up's history
is the chain of turns, read in one recursive query (SQLite and Postgres both
have `WITH RECURSIVE`). A Response belongs to the API key that created it and
is visible to that key only. A failed Response (a stream that broke off) is
kept too, for `GET`, but cannot be continued: `history` raises `FailedResponse`.
A Response expires after `accounts.response_ttl_seconds` (30 days by default,
as OpenAI keeps them); expired rows are deleted at most every ten minutes,
when a new Response is stored.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from switchboard.storage.base import Storage, execute, single

_SWEEP_EVERY = 600.0

_CHAIN = """
WITH RECURSIVE chain(response_id, parent_id, turn, status, depth) AS (
    SELECT response_id, parent_id, turn, status, 0 FROM responses
    WHERE response_id = ? AND key_id = ? AND created_at >= ?
    UNION ALL
    SELECT r.response_id, r.parent_id, r.turn, r.status, c.depth + 1
    FROM responses r JOIN chain c ON r.response_id = c.parent_id
    WHERE r.key_id = ? AND r.created_at >= ? AND c.depth < 100000
)
SELECT response_id, parent_id, turn, status FROM chain ORDER BY depth DESC
"""


class BrokenChain(Exception):
    """An earlier Response of the conversation has expired or was deleted."""


class FailedResponse(Exception):
    """The Response ended `failed`: there is no answer to continue from."""


class ResponseStore:
    def __init__(self, storage: Storage, ttl_seconds: float) -> None:
        self.storage = storage
        self.ttl = ttl_seconds
        self._swept = 0.0

    def _cutoff(self) -> float:
        return time.time() - self.ttl

    async def _chain(self, response_id: str, key_id: str) -> list[dict[str, Any]] | None:
        cutoff = self._cutoff()
        rows = await self.storage.fetchall(_CHAIN, response_id, key_id, cutoff, key_id, cutoff)
        if not rows:
            return None
        if rows[0]["parent_id"] is not None:
            raise BrokenChain(response_id)
        return rows

    async def turns(self, response_id: str, key_id: str) -> list[tuple[str, list[dict[str, Any]]]] | None:
        """The conversation up to and including `response_id`'s answer, as (response id, its turn's canonical
        messages), oldest first; None when that Response is unknown to this key (or expired). Raises `BrokenChain`."""
        rows = await self._chain(response_id, key_id)
        return None if rows is None else [(row["response_id"], orjson.loads(row["turn"])) for row in rows]

    async def history(self, response_id: str, key_id: str) -> list[dict[str, Any]] | None:
        """The canonical messages of the conversation up to and including `response_id`'s answer, to continue it
        (see `turns`); raises `FailedResponse` when that Response failed."""
        rows = await self._chain(response_id, key_id)
        if rows is None:
            return None
        if rows[-1]["status"] == "failed":
            raise FailedResponse(response_id)
        return [message for row in rows for message in orjson.loads(row["turn"])]

    async def save(self, response: dict[str, Any], key_id: str, parent_id: str | None,
                   turn: list[dict[str, Any]]) -> None:
        now = time.time()
        await self.storage.transact(single(execute(
            "INSERT INTO responses (response_id, key_id, parent_id, created_at, turn, response, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (response_id) DO NOTHING",
            response["id"], key_id, parent_id, now, orjson.dumps(turn), orjson.dumps(response),
            response.get("status"))))
        if now - self._swept > _SWEEP_EVERY:
            self._swept = now
            await self.storage.transact(single(execute("DELETE FROM responses WHERE created_at < ?", self._cutoff())))

    async def get(self, response_id: str, key_id: str) -> dict[str, Any] | None:
        row = await self.storage.fetchone("SELECT response FROM responses WHERE response_id = ? AND key_id = ? "
                                          "AND created_at >= ?", response_id, key_id, self._cutoff())
        return orjson.loads(row["response"]) if row is not None else None

    async def delete(self, response_id: str, key_id: str) -> bool:
        deleted = await self.storage.transact(single(execute(
            "DELETE FROM responses WHERE response_id = ? AND key_id = ?", response_id, key_id)))
        return bool(deleted)
