"""Provider kinds and where their adapters live; adapters are imported on first use."""

from __future__ import annotations

import importlib

from switchboard.http.client import HttpClient
from switchboard.providers.base import Provider

ADAPTERS: dict[str, str] = {
    "openai": "switchboard.providers.openai:OpenAIProvider",
    "anthropic": "switchboard.providers.anthropic:AnthropicProvider",
    "replay": "switchboard.providers.replay:ReplayProvider",
    "gemini": "switchboard.providers.gemini:GeminiProvider",
    "azure": "switchboard.providers.azure:AzureOpenAIProvider",
    "bedrock": "switchboard.providers.bedrock:BedrockProvider",
    "ollama": "switchboard.providers.ollama:OllamaProvider",
}


class ProviderRegistry:
    """One adapter instance per kind, sharing the gateway's HTTP client."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self._instances: dict[str, Provider] = {}

    def get(self, kind: str) -> Provider:
        provider = self._instances.get(kind)
        if provider is None:
            target = ADAPTERS.get(kind)
            if target is None:
                raise KeyError(f"no adapter for provider kind {kind!r} (known: {', '.join(sorted(ADAPTERS))})")
            module, _, name = target.partition(":")
            provider = getattr(importlib.import_module(module), name)(self.client)
            self._instances[kind] = provider
        return provider

    @staticmethod
    def available(kind: str) -> bool:
        return kind in ADAPTERS
