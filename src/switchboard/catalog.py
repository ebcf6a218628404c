"""The bundled price and capability catalog of well-known models.

So that most config entries need no prices: a deployment's upstream model id is
looked up here (exactly, then without a provider prefix or a date suffix, then
by longest known prefix), and its prices, context window and capabilities
become the model's defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

from switchboard.config import Pricing

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|v\d+(:\d+)?)$")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    id: str
    family: str
    pricing: Pricing
    context_window: int | None
    max_output_tokens: int | None
    capabilities: frozenset[str]
    image_tokens: int | None = None  # the most prompt tokens one image can become, where it is known to exceed 3,000


@lru_cache(maxsize=1)
def _entries() -> dict[str, CatalogEntry]:
    raw = orjson.loads(resources.files("switchboard").joinpath("data/catalog.json").read_bytes())["models"]
    return {
        model_id: CatalogEntry(
            id=model_id,
            family=e["family"],
            pricing=Pricing(e["in"], e["out"], e.get("cached"), e.get("cache_write", _cache_write(e))),
            context_window=e.get("context"),
            max_output_tokens=e.get("max_out"),
            capabilities=frozenset(e.get("caps", ())),
            image_tokens=e.get("img"),
        )
        for model_id, e in raw.items()
    }


def _cache_write(entry: dict[str, Any]) -> float | None:
    """Anthropic prices a prompt-cache write (5-minute TTL) at 1.25 x input; others do not charge writes."""
    return round(entry["in"] * 1.25, 6) if entry["family"] == "anthropic" else None


def all_entries() -> dict[str, CatalogEntry]:
    return dict(_entries())


@lru_cache(maxsize=1024)
def lookup(model_id: str) -> CatalogEntry | None:
    """Find a model in the catalog by its upstream id, tolerating prefixes and date suffixes."""
    entries = _entries()
    name = model_id.strip().lower()
    candidates = [name, name.rsplit("/", 1)[-1]]
    if ":" in candidates[-1] and not name.startswith("arn:"):
        candidates.append(candidates[-1].split(":", 1)[0])
    for cand in list(candidates):
        stripped = _DATE_SUFFIX.sub("", cand)
        if stripped != cand:
            candidates.append(stripped)
    for cand in candidates:
        if cand in entries:
            return entries[cand]
    best = None
    for cand in candidates:
        for key in entries:
            if cand.startswith(key + "-") or cand.startswith(key + "."):
                if best is None or len(key) > len(best.id):
                    best = entries[key]
    return best
