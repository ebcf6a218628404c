"""Feedback on logged requests, and the router training data it yields.

`POST /v1/feedback` takes ``{"request_id", "score"}`` (0 = bad, 1 = good; or
``"rating": "good" | "bad"``), optionally a ``comment`` and the ``prompt`` (needed
unless the gateway stores prompts, `storage.store_prompts`). Only the key that
made the request, or the admin, may rate it.

Feedback becomes training data for the router where it says something about
the weak model: a request a router sent to its *weak* model and rated good
means the strong model was not needed (``winner: weak``); rated bad means it
was (``winner: strong``). A rated answer of the strong model says nothing about
what the weak one would have done, so it is left out, and so is a request that
did not end with a whole answer (a hang-up, 499, or a failure): its feedback is
kept, but a cut-off answer is no evidence about the weak model. The export is the JSONL
that `switchboard router train --data FILE` reads; where the gateway stored the
answer, it carries it as ``weak_answer``, which trains the cascade's verifier
(`--kind verifier`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.api.params import check_text
from switchboard.core.request import messages_text
from switchboard.errors import InvalidRequest, NotFound, PermissionDenied
from switchboard.http.server import Request, Response
from switchboard.storage.base import Steps, execute, without_nul

if TYPE_CHECKING:
    from switchboard.app import Gateway


def _score(body: dict[str, Any]) -> float:
    if "score" in body and "rating" in body:
        raise InvalidRequest("Send 'score' or 'rating', not both.", param="score")
    if "score" in body:
        score = body["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise InvalidRequest("'score' must be a number from 0 (bad) to 1 (good).", param="score")
        return float(score)
    rating = body.get("rating")
    if rating in ("good", "bad"):
        return 1.0 if rating == "good" else 0.0
    raise InvalidRequest("Send 'score' (0 to 1) or 'rating' ('good' or 'bad').", param="score")


def _prompt_of(row: dict[str, Any]) -> str | None:
    extra = orjson.loads(row["extra"]) if row.get("extra") else {}
    messages = extra.get("messages") if isinstance(extra, dict) else None
    return messages_text(messages) if isinstance(messages, list) else None


async def post_feedback(gw: Gateway, request: Request) -> Response:
    identity = await gw.auth.authenticate(request.headers)
    try:
        body = orjson.loads(request.body or b"null")
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
        raise InvalidRequest("'request_id' is required: the x-request-id of the request you rate.", param="request_id")
    check_text(body["request_id"], "request_id")
    score = _score(body)
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 10_000):
        raise InvalidRequest("'comment' must be a string of at most 10,000 characters.", param="comment")
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidRequest("'prompt' must be a string.", param="prompt")
    await gw.request_log.flush()
    row = await gw.storage.fetchone("SELECT request_id, key_id, router, model_used, status, extra FROM request_log "
                                    "WHERE request_id = ?", body["request_id"])
    if row is None:
        raise NotFound(f"No logged request {body['request_id']!r}.", param="request_id")
    if not identity.is_admin and row["key_id"] != identity.key_id:
        raise PermissionDenied("Only the key that made a request may rate it.", param="request_id",
                               code="not_your_request")
    prompt = _prompt_of(row) or prompt  # the prompt the gateway kept, when it kept one, over the client's word
    comment, prompt = without_nul(comment), without_nul(prompt)  # as in the request log: Postgres refuses U+0000

    def replace() -> Steps[None]:
        # One statement, not a delete then an insert: two ratings of one request at once must not both insert.
        yield execute("INSERT INTO feedback (request_id, ts, key_id, score, comment, prompt) VALUES (?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (request_id) DO UPDATE SET ts = excluded.ts, key_id = excluded.key_id, "
                      "score = excluded.score, comment = excluded.comment, prompt = excluded.prompt",
                      body["request_id"], time.time(), identity.key_id, score, comment, prompt)

    await gw.storage.transact(replace())
    router = gw.routers.get(row["router"]) if row["router"] else None
    usable = (prompt is not None and router is not None and row["model_used"] == router.settings.weak
              and row["status"] == 200)
    return Response(200, orjson.dumps({"object": "feedback", "request_id": body["request_id"], "score": score,
                                       "usable_for_training": usable}))


async def training_examples(gw: Gateway) -> list[dict[str, Any]]:
    """Feedback on routed requests as router training examples ({"prompt", "winner", "group"},
    plus "weak_answer" when the gateway stored the answer: verifier training data)."""
    rows = await gw.storage.fetchall(
        "SELECT f.prompt, f.score, r.router, r.model_used, r.extra FROM feedback f "
        "JOIN request_log r ON r.request_id = f.request_id "
        "WHERE r.router IS NOT NULL AND f.prompt IS NOT NULL AND r.status = 200")
    out = []
    for row in rows:
        router = gw.routers.get(row["router"])
        if router is None or row["model_used"] != router.settings.weak:
            continue
        example = {"prompt": row["prompt"], "winner": "weak" if row["score"] >= 0.5 else "strong",
                   "group": row["router"]}
        extra = orjson.loads(row["extra"]) if row.get("extra") else {}
        if isinstance(extra, dict) and isinstance(extra.get("response"), str):
            example["weak_answer"] = extra["response"]
        out.append(example)
    return out


async def export_feedback(gw: Gateway, request: Request) -> Response:
    await gw.auth.require_admin(request.headers)
    examples = await training_examples(gw)
    body = b"".join(orjson.dumps(e) + b"\n" for e in examples)
    return Response(200, body, content_type="application/x-ndjson")


def install(gw: Gateway) -> None:
    gw.add_route("POST", "/v1/feedback", post_feedback)
    gw.add_route("GET", "/admin/feedback/export", export_feedback)
    gw.openapi_extensions = [*getattr(gw, "openapi_extensions", []), openapi_paths]


def openapi_paths(paths: dict[str, Any]) -> None:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    paths["/v1/feedback"] = {"post": {
        "operationId": "postFeedback", "summary": "Rate a logged request (router training data)",
        "security": [{"bearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["request_id"], "properties": {
                "request_id": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
                "rating": {"enum": ["good", "bad"]}, "comment": {"type": "string"}, "prompt": {"type": "string"}}}}}},
        "responses": {"200": {"description": "Recorded", "content": {"application/json": {"schema": {"type": "object"}}}},
                      "400": {"description": "Invalid", "content": error}, "401": {"description": "No key", "content": error},
                      "403": {"description": "Not your request", "content": error},
                      "404": {"description": "Unknown request id", "content": error}}}}
    paths["/admin/feedback/export"] = {"get": {
        "operationId": "exportFeedback", "summary": "Feedback as router training JSONL (admin)",
        "security": [{"bearer": []}],
        "responses": {"200": {"description": "JSONL of {prompt, winner, group}",
                              "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                      "401": {"description": "No key", "content": error}, "403": {"description": "Not admin", "content": error}}}}
