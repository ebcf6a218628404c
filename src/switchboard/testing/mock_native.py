"""Routes of the mock upstream's native provider formats (Gemini, Azure OpenAI, Bedrock, Ollama).

Each format lives in its own module (`mock_gemini`, `mock_azure`,
`mock_bedrock`, `mock_ollama`); this one only picks the module for a path and
holds what they share: injected faults rendered in each provider's own error
shape, so that adapters are tested against the errors the real APIs send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from switchboard.testing.mock_upstream import MockUpstream


def native_route(mock: MockUpstream, method: str, path: str):
    """The handler for a Gemini, Azure, Bedrock or Ollama path, or None."""
    if method != "POST":
        return None
    if path.startswith("/v1beta/models/") or path.startswith("/v1/models/") and ":" in path:
        from switchboard.testing import mock_gemini
        return mock_gemini.route(mock, path)
    if path.startswith("/openai/"):
        from switchboard.testing import mock_azure
        return mock_azure.route(mock, path)
    if path.startswith("/model/"):
        from switchboard.testing import mock_bedrock
        return mock_bedrock.route(mock, path)
    if path in ("/api/chat", "/api/embed"):
        from switchboard.testing import mock_ollama
        return mock_ollama.route(mock, path)
    return None


async def injected_fault(mock: MockUpstream, model: str) -> tuple[int, str, dict[str, str]] | None:
    """Apply the model's faults and latency (`MockUpstream.before_reply`); (status, message, headers) of an error."""
    response = await mock.before_reply(model)
    if response is None:
        return None
    try:
        message = orjson.loads(response.body)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = "injected fault"
    headers = {k: v for k, v in response.headers.items() if k == "retry-after"}
    return response.status, message, headers


def count_model(mock: MockUpstream, model: str) -> None:
    mock.stats.by_model[model] = mock.stats.by_model.get(model, 0) + 1


class Invalid(Exception):
    """A request the real API would refuse; carries the provider's status and message."""

    def __init__(self, message: str, status: int = 400, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.extra = extra or {}
