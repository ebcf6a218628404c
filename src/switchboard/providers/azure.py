"""Azure OpenAI adapter: the OpenAI wire format behind Azure's deployment URLs and auth.

The body is OpenAI's, so this is the OpenAI adapter with three changes: the
URL names the deployment (`/openai/deployments/{deployment}/...?api-version=`;
the deployment name is the configured upstream model), the key goes in the
`api-key` header unless the deployment says `api_key_header: authorization`
(a Microsoft Entra ID bearer token), and Azure's own error codes are read:
its content filter answers 400 with code `content_filter`, which must be a
content-policy failure rather than a plain bad request. Azure's streams also
open with a chunk that only carries `prompt_filter_results`; it is dropped.
`api_version: v1` selects Azure's newer `/openai/v1/` API, which takes the
model in the body and no api-version.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson

from switchboard import errors
from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import UpstreamError
from switchboard.providers.openai import OpenAIProvider

DEFAULT_API_VERSION = "2024-10-21"


class AzureOpenAIProvider(OpenAIProvider):
    kind = "azure"

    def url(self, deployment: Deployment, path: str) -> str:
        version = str(deployment.options.get("api_version") or DEFAULT_API_VERSION)
        if version == "v1":
            return f"{deployment.base_url}/openai/v1{path}"
        name = quote(deployment.upstream_model, safe="")
        return f"{deployment.base_url}/openai/deployments/{name}{path}?api-version={quote(version, safe='')}"

    def headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if deployment.api_key is not None:
            key = deployment.api_key.reveal()
            if str(deployment.options.get("api_key_header") or "api-key").lower() in ("authorization", "bearer"):
                headers["authorization"] = "Bearer " + key
            else:
                headers["api-key"] = key
        extra = deployment.options.get("headers")
        if extra:
            headers.update(extra)
        return headers

    async def chat_stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[dict[str, Any]]:
        chunks = super().chat_stream(request, deployment)
        try:
            async for chunk in chunks:
                if not chunk.get("choices") and chunk.get("usage") is None:
                    continue  # Azure's prompt_filter_results preamble
                yield chunk
        finally:
            await chunks.aclose()  # release the upstream connection now, not at garbage collection

    def error_from_response(self, status: int, body: bytes, headers: dict[str, str], deployment: Deployment) -> UpstreamError:
        error = super().error_from_response(status, body, headers, deployment)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return error
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            return error
        inner = err.get("innererror") if isinstance(err.get("innererror"), dict) else {}
        code = str(err.get("code") or "")
        kind = None
        if code == "content_filter" or inner.get("code") == "ResponsibleAIPolicyViolation":
            kind = errors.CONTENT_POLICY
        elif code == "context_length_exceeded":
            kind = errors.CONTEXT_LENGTH
        if kind is None or kind == error.kind:
            return error
        return UpstreamError(kind, error.message, upstream_status=status, retry_after=error.retry_after)
