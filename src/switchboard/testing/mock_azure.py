"""The mock upstream's Azure OpenAI API: `/openai/deployments/{deployment}/chat/completions?api-version=...`.

The body format is OpenAI's, so the OpenAI handler answers, with the
deployment name as the model. What is Azure's own is checked or added here:
the `api-version` query parameter (missing: 404 "Resource not found", as
Azure answers), the `api-key` header or an Entra ID bearer token (missing:
401), the content filter (a blocked prompt is a 400 with code
`content_filter`; a filtered answer ends with finish_reason
`content_filter`), and the `prompt_filter_results` chunk Azure streams first.
The newer `/openai/v1/...` API takes the model from the body instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import orjson

from switchboard.http.server import Request, Response, StreamResponse

if TYPE_CHECKING:
    from switchboard.testing.mock_upstream import MockUpstream

_FILTER_OK = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
              "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}


def route(mock: MockUpstream, path: str):
    parts = path.split("/")
    # /openai/deployments/{name}/chat/completions  or  /openai/v1/chat/completions
    if len(parts) >= 5 and parts[2] == "deployments":
        deployment, operation = unquote(parts[3]), "/".join(parts[4:])
    elif len(parts) >= 4 and parts[2] == "v1":
        deployment, operation = None, "/".join(parts[3:])
    else:
        return None
    if operation not in ("chat/completions", "embeddings"):
        return None
    return lambda request, body: handle(mock, request, body, deployment, operation)


def error(http_status: int, code: str, message: str, **extra: Any) -> Response:
    return Response(http_status, orjson.dumps({"error": {"code": code, "message": message, **extra}}))


async def handle(mock: MockUpstream, request: Request, body: dict[str, Any], deployment: str | None,
                 operation: str) -> Response | StreamResponse:
    if deployment is not None and not parse_qs(request.query).get("api-version"):
        return error(404, "404", "Resource not found")
    auth = request.headers.get("authorization", "")
    if not request.headers.get("api-key") and not auth.startswith("Bearer "):
        return error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                                 "provide a valid key for an active subscription and use a correct regional API "
                                 "endpoint for your resource.")
    model = deployment or str(body.get("model", ""))
    body = {**body, "model": model}
    if operation == "embeddings":
        return await mock.openai_embeddings(request, body)
    behaviour = mock.behaviour(model)
    if behaviour.safety_block == "prompt":
        return error(400, "content_filter",
                     "The response was filtered due to the prompt triggering Azure OpenAI's content management "
                     "policy. Please modify your prompt and retry.", param="prompt", status=400,
                     innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                         **_FILTER_OK, "violence": {"filtered": True, "severity": "high"}}})
    response = await mock.openai_chat(request, body)
    if isinstance(response, StreamResponse):
        response.chunks = _with_filter_preamble(response.chunks)
    elif response.status == 200:
        data = orjson.loads(response.body)
        data["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _FILTER_OK}]
        for choice in data["choices"]:
            choice["content_filter_results"] = _FILTER_OK
            if behaviour.safety_block == "output":
                choice["finish_reason"] = "content_filter"
                choice["message"]["content"] = ""
        response.body = orjson.dumps(data)
    return response


async def _with_filter_preamble(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield b"data: " + orjson.dumps({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                     "prompt_filter_results": [{"prompt_index": 0,
                                                                "content_filter_results": _FILTER_OK}]}) + b"\n\n"
    async for chunk in chunks:
        yield chunk
