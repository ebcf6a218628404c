"""Zero config: find providers from the usual environment variables, or fall back to the demo.

With no config file, `switchboard serve` looks for provider keys in the
environment (and an Ollama server on localhost:11434) and configures their
well-known models. With none found it starts the demo: two simulated models
served by the in-process mock upstream, so a first request works offline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson

# env var -> (provider kind, base URL or None for the kind's default, models)
KNOWN_PROVIDERS: dict[str, tuple[str, str | None, list[str]]] = {
    "OPENAI_API_KEY": ("openai", None, ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "text-embedding-3-small"]),
    "ANTHROPIC_API_KEY": ("anthropic", None, ["claude-sonnet-4-5", "claude-haiku-4-5"]),
    "GEMINI_API_KEY": ("gemini", None, ["gemini-2.5-flash", "gemini-2.5-pro"]),
    "MISTRAL_API_KEY": ("openai", "https://api.mistral.ai/v1", ["mistral-large-latest", "mistral-small-latest"]),
    "GROQ_API_KEY": ("openai", "https://api.groq.com/openai/v1", ["llama-3.3-70b-versatile", "llama-3.1-8b-instant"]),
    "DEEPSEEK_API_KEY": ("openai", "https://api.deepseek.com/v1", ["deepseek-chat", "deepseek-reasoner"]),
}

DEMO_SMALL = "demo-small"
DEMO_LARGE = "demo-large"


def discover_env(env: Mapping[str, str], available_kinds: set[str]) -> tuple[dict[str, Any], list[str]]:
    """Model entries for every provider whose key is set; and what was found, in words."""
    models: dict[str, Any] = {}
    notes: list[str] = []
    for var, (kind, base_url, names) in KNOWN_PROVIDERS.items():
        if not env.get(var):
            continue
        if kind not in available_kinds:
            notes.append(f"{var} is set, but the {kind} adapter is not available in this build; skipped")
            continue
        for name in names:
            dep: dict[str, Any] = {"provider": kind, "model": name, "api_key": "${%s}" % var}
            if base_url:
                dep["base_url"] = base_url
            models.setdefault(name, {"deployments": [dep]})
        notes.append(f"{var}: {', '.join(names)}")
    return models, notes


async def discover_ollama(base_url: str = "http://localhost:11434", timeout: float = 0.3) -> list[str]:
    """Names of the models a local Ollama server has, or [] if none answers quickly."""
    from switchboard.http.client import HttpClient, HttpClientError, Timeouts

    client = HttpClient()
    try:
        response = await client.request("GET", base_url + "/api/tags", timeouts=Timeouts(timeout, timeout, timeout))
        if response.status != 200:
            return []
        data = orjson.loads(await response.read())
        return [m["name"] for m in data.get("models", []) if isinstance(m, dict) and "name" in m]
    except (HttpClientError, OSError, ValueError, KeyError, asyncio.TimeoutError):
        return []
    finally:
        await client.close()


def ollama_models(names: list[str], base_url: str = "http://localhost:11434") -> dict[str, Any]:
    return {name: {"deployments": [{"provider": "openai", "model": name, "base_url": base_url + "/v1"}],
                   "pricing": {"input_per_mtok": 0, "output_per_mtok": 0}} for name in names}


def demo_models(mock_base_url: str) -> dict[str, Any]:
    """Two simulated models: small/fast/cheap and large/slow/expensive."""
    return {
        DEMO_SMALL: {"deployments": [{"provider": "openai", "model": DEMO_SMALL, "base_url": mock_base_url}],
                     "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                     "context_window": 16000, "capabilities": ["tools", "json"]},
        DEMO_LARGE: {"deployments": [{"provider": "openai", "model": DEMO_LARGE, "base_url": mock_base_url}],
                     "pricing": {"input_per_mtok": 2.5, "output_per_mtok": 10.0},
                     "context_window": 128000, "capabilities": ["vision", "tools", "json"]},
    }


def demo_behaviours() -> dict[str, Any]:
    from switchboard.testing.mock_upstream import ModelBehaviour

    return {
        DEMO_SMALL: ModelBehaviour(ttft=0.02, tokens_per_second=400.0),
        DEMO_LARGE: ModelBehaviour(ttft=0.15, tokens_per_second=80.0),
    }
