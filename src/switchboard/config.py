"""The gateway's configuration as typed objects.

A config is a YAML file (see docs/configuration.md); every value is checked
here, and a bad one is reported with its key path and line. Secrets are given
as environment references (``${OPENAI_API_KEY}``) and held in `Secret`,
whose repr never shows the value, so they cannot leak into logs.

Nothing here is global: `load_config` returns a `GatewayConfig` that the app
is built from and passed down.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchboard.http.client import Timeouts
from switchboard.routing.policy import DEFAULT_RELIABILITY, Reliability, read_reliability
from switchboard.yamlsource import Located, SourceError, load_located

if TYPE_CHECKING:
    from switchboard.wildcards import WildcardModel

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$|^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")
_ENV_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

PROVIDER_KINDS = ("openai", "anthropic", "gemini", "azure", "bedrock", "ollama", "replay")
CAPABILITIES = frozenset({"vision", "tools", "json", "embeddings", "streaming"})


# Every config problem is a SourceError: it carries the file and line of the bad value.
ConfigError = SourceError


class Secret:
    """A secret value that never shows itself in a repr, a log line or an error."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Pricing:
    """Prices in US dollars per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None  # prompt tokens read from the provider's cache
    cache_write_per_mtok: float | None = None  # prompt tokens written to it (Anthropic: 1.25 x input)
    cache_write_1h_per_mtok: float | None = None  # written with a one-hour TTL (Anthropic: 2 x input)

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
             cache_write_tokens: int = 0, cache_write_1h_tokens: int = 0) -> float:
        """Dollars; `cached_tokens` and `cache_write_tokens` are parts of `prompt_tokens`, each at its own
        price (the input price when none is set), and `cache_write_1h_tokens` the part of the writes made with
        a one-hour TTL (twice the input price when none is set: the only provider with such a cache,
        Anthropic, charges that)."""
        cached_price = self.cached_input_per_mtok if self.cached_input_per_mtok is not None else self.input_per_mtok
        write_price = self.cache_write_per_mtok if self.cache_write_per_mtok is not None else self.input_per_mtok
        hour_price = self.cache_write_1h_per_mtok if self.cache_write_1h_per_mtok is not None \
            else 2 * self.input_per_mtok
        hour = min(cache_write_1h_tokens, cache_write_tokens)
        fresh = max(0, prompt_tokens - cached_tokens - cache_write_tokens)
        return (fresh * self.input_per_mtok + cached_tokens * cached_price + (cache_write_tokens - hour) * write_price
                + hour * hour_price + completion_tokens * self.output_per_mtok) / 1e6


@dataclass(slots=True)
class Deployment:
    """One place a model is served: a provider kind, an upstream model id and how to reach it."""

    id: str
    model_name: str
    provider: str
    upstream_model: str
    base_url: str
    api_key: Secret | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    pricing: Pricing | None = None
    options: dict[str, Any] = field(default_factory=dict)
    ttft: float | None = None  # seconds to a stream's first chunk (docs/reliability.md)


@dataclass(slots=True)
class ModelConfig:
    name: str
    deployments: list[Deployment]
    pricing: Pricing = field(default_factory=Pricing)
    context_window: int | None = None
    max_output_tokens: int | None = None
    image_tokens: int | None = None  # the most prompt tokens one image can become (credit holds); None: the default
    capabilities: frozenset[str] = frozenset()
    fallbacks: list[str] = field(default_factory=list)
    context_fallbacks: list[str] = field(default_factory=list)
    policy_fallbacks: list[str] = field(default_factory=list)
    strategy: str = "weighted"
    simulated: bool = False
    reliability: Reliability = DEFAULT_RELIABILITY

    @property
    def embeddings_only(self) -> bool:
        """An embedding model (capability `embeddings`, from the catalog or the config): it answers no chat."""
        return "embeddings" in self.capabilities


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4000
    max_body_bytes: int = 10 * 1024 * 1024
    drain_seconds: float = 30.0
    read_timeout: float = 30.0  # to finish sending a request once begun (a 408 after)
    idle_timeout: float = 75.0  # an idle keep-alive connection is closed after this
    write_timeout: float = 60.0  # a client that reads nothing of its answer for this long is dropped


@dataclass(slots=True)
class StorageConfig:
    sqlite_path: str = "switchboard.db"
    database_url: Secret | None = None
    redis_url: Secret | None = None
    store_prompts: bool = False
    log_flush_seconds: float = 0.2


@dataclass(slots=True)
class GatewayConfig:
    models: dict[str, ModelConfig]
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    master_key: Secret | None = None
    source: str = "<defaults>"
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    doc: Located | None = None
    reliability: Reliability = DEFAULT_RELIABILITY
    redis_namespace: str = "switchboard"
    wildcards: dict[str, WildcardModel] = field(default_factory=dict)  # `openai/*` entries (wildcards.py)

    def model(self, name: str) -> ModelConfig | None:
        return self.models.get(name)


# ---------------------------------------------------------------- reading


class _Section:
    """Reads one mapping of the YAML, checking names and types, with line-numbered errors."""

    def __init__(self, doc: Located, path: tuple, value: Any, env: Mapping[str, str]) -> None:
        if not isinstance(value, dict):
            raise doc.error(path, f"must be a mapping, got {type(value).__name__}")
        self.doc, self.path, self.value, self.env = doc, path, value, env
        self._seen: set[str] = set()

    def error(self, key: str | None, message: str) -> ConfigError:
        e = self.doc.error(self.path + ((key,) if key else ()), message)
        return ConfigError(str(e))

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self.value.get(key)

    def _interp(self, key: str, text: str) -> str:
        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            raise self.error(key, f"environment variable {name} is not set")

        return _ENV_INTERP.sub(sub, text)

    def str(self, key: str, default: str | None = None, *, required: bool = False, choices: tuple | None = None) -> str | None:
        value = self.raw(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.error(key, f"must be a string, got {type(value).__name__}")
        value = self._interp(key, str(value))
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def secret(self, key: str) -> Secret | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, "must be an environment reference such as ${OPENAI_API_KEY}")
        m = _ENV_REF.match(value.strip())
        if not m:
            raise self.error(key, "must be an environment reference such as ${OPENAI_API_KEY}, never the secret itself")
        name = m.group(1) or m.group(2)
        if name not in self.env:
            raise self.error(key, f"environment variable {name} is not set")
        return Secret(self.env[name], f"${name}")

    def number(self, key: str, default: float | None = None, *, minimum: float | None = None,
               maximum: float | None = None, integer: bool = False) -> Any:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, str):
            text = self._interp(key, value)  # an unset variable is its own error, not "must be a number"
            try:
                value = float(text) if not integer else int(text)
            except ValueError:
                value = None
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (integer and not float(value).is_integer()):
            raise self.error(key, f"must be {kind}{'' if integer else ' (finite)'}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum:g}")
        return int(value) if integer else float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def str_list(self, key: str) -> list[str]:
        value = self.raw(key)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return list(value)

    def section(self, key: str) -> _Section | None:
        value = self.raw(key)
        if value is None:
            return None
        return _Section(self.doc, self.path + (key,), value, self.env)

    def done(self) -> None:
        unknown = [k for k in self.value if k not in self._seen]
        if unknown:
            known = ", ".join(sorted(self._seen))
            raise self.error(unknown[0], f"unknown key {unknown[0]!r} (known keys here: {known})")


def _timeouts(sec: _Section | None, base: Timeouts) -> Timeouts:
    if sec is None:
        return base
    t = Timeouts(
        connect=sec.number("connect", base.connect, minimum=0.001),
        read=sec.number("read", base.read, minimum=0.001),
        total=sec.number("total", base.total, minimum=0.001),
    )
    sec.done()
    return t


def _pricing(sec: _Section | None) -> Pricing | None:
    if sec is None:
        return None
    p = Pricing(
        input_per_mtok=sec.number("input_per_mtok", 0.0, minimum=0),
        output_per_mtok=sec.number("output_per_mtok", 0.0, minimum=0),
        cached_input_per_mtok=sec.number("cached_input_per_mtok", None, minimum=0),
        cache_write_per_mtok=sec.number("cache_write_per_mtok", None, minimum=0),
        cache_write_1h_per_mtok=sec.number("cache_write_1h_per_mtok", None, minimum=0),
    )
    sec.done()
    return p


DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "ollama": "http://localhost:11434",
}

_DEPLOYMENT_OPTIONS = ("api_version", "region", "headers", "api_key_header", "aws_access_key_id",
                       "aws_secret_access_key", "aws_session_token", "native", "allow_private_image_urls",
                       "recordings", "recorded_model", "chunk_words", "guardrail", "reasoning",
                       "max_stop_sequences")


def _guardrail(sec: _Section | None) -> dict[str, str]:
    """A Bedrock guardrail to apply to every call of a deployment: Converse's `guardrailConfig`."""
    assert sec is not None
    guardrail = {"guardrailIdentifier": sec.str("id", required=True) or "",
                 "guardrailVersion": sec.str("version", required=True) or "",
                 "trace": sec.str("trace", "disabled", choices=("enabled", "disabled", "enabled_full")) or ""}
    mode = sec.str("stream_processing", None, choices=("sync", "async"))
    if mode:
        guardrail["streamProcessingMode"] = mode
    sec.done()
    return guardrail


def _deployment(sec: _Section, model_name: str, index: int, default_timeouts: Timeouts) -> Deployment:
    provider = sec.str("provider", required=True, choices=PROVIDER_KINDS)
    upstream = sec.str("model", model_name)
    base_url = sec.str("base_url", DEFAULT_BASE_URLS.get(provider))
    if not base_url and provider not in ("bedrock", "replay"):
        raise sec.error("base_url", f"is required for provider {provider!r}")
    options: dict[str, Any] = {}
    for key in _DEPLOYMENT_OPTIONS:
        value = sec.raw(key)
        if value is None:
            continue
        if key.startswith("aws_"):
            options[key] = sec.secret(key)
        elif key == "guardrail":
            if provider != "bedrock":
                raise sec.error(key, "is a Bedrock option (provider: bedrock)")
            options[key] = _guardrail(sec.section(key))
        elif key == "reasoning":
            options[key] = sec.bool(key, False)
        elif key == "max_stop_sequences":
            options[key] = sec.number(key, None, minimum=0, integer=True)
        elif key == "headers":
            if not isinstance(value, dict):
                raise sec.error(key, "must be a mapping of header names to values")
            options[key] = {str(k): sec._interp(key, str(v)) for k, v in value.items()}
        else:
            options[key] = value
    timeouts_sec = sec.section("timeouts")
    ttft = timeouts_sec.number("ttft", None, minimum=0.001) if timeouts_sec is not None else None
    dep = Deployment(
        id=sec.str("id", f"{model_name}#{index}") or "",
        model_name=model_name,
        provider=provider or "",
        upstream_model=upstream or model_name,
        base_url=(base_url or "").rstrip("/"),
        api_key=sec.secret("api_key"),
        timeouts=_timeouts(timeouts_sec, default_timeouts),
        weight=sec.number("weight", 1.0, minimum=0),
        rpm=sec.number("rpm", None, minimum=1, integer=True),
        tpm=sec.number("tpm", None, minimum=1, integer=True),
        pricing=_pricing(sec.section("pricing")),
        options=options,
        ttft=ttft,
    )
    extra = sec.section("settings")
    if extra is not None:
        dep.options.update(extra.value)
        extra._seen.update(extra.value)
    sec.done()
    return dep


STRATEGIES = ("weighted", "least-busy", "latency", "cost", "headroom", "ordered")


def _model(sec: _Section, name: str, default_timeouts: Timeouts,
           reliability: Reliability = DEFAULT_RELIABILITY) -> ModelConfig:
    from switchboard.catalog import lookup

    deps_raw = sec.raw("deployments")
    if not isinstance(deps_raw, list) or not deps_raw:
        raise sec.error("deployments", "must be a non-empty list of deployments")
    deployments = [
        _deployment(_Section(sec.doc, sec.path + ("deployments", i), d, sec.env), name, i, default_timeouts)
        for i, d in enumerate(deps_raw)
    ]
    entry = lookup(deployments[0].upstream_model) or lookup(name)
    pricing = _pricing(sec.section("pricing"))
    if pricing is None:
        pricing = entry.pricing if entry else Pricing()
    caps_list = sec.str_list("capabilities")
    bad = [c for c in caps_list if c not in CAPABILITIES]
    if bad:
        raise sec.error("capabilities", f"unknown capability {bad[0]!r} (known: {', '.join(sorted(CAPABILITIES))})")
    capabilities = frozenset(caps_list) if caps_list else (entry.capabilities if entry else frozenset())
    model = ModelConfig(
        name=name,
        deployments=deployments,
        pricing=pricing,
        context_window=sec.number("context_window", entry.context_window if entry else None, minimum=1, integer=True),
        max_output_tokens=sec.number("max_output_tokens", entry.max_output_tokens if entry else None, minimum=1, integer=True),
        image_tokens=sec.number("image_tokens", entry.image_tokens if entry else None, minimum=0, integer=True),
        capabilities=capabilities,
        fallbacks=sec.str_list("fallbacks"),
        context_fallbacks=sec.str_list("context_window_fallbacks"),
        policy_fallbacks=sec.str_list("content_policy_fallbacks"),
        strategy=sec.str("strategy", "weighted", choices=STRATEGIES) or "weighted",
        reliability=read_reliability(sec, reliability),
    )
    sec.done()
    return model


# Top-level sections owned by other parts of the gateway; each reads its own.
EXTENSION_SECTIONS = ("routers", "router_settings", "accounts", "limits", "reliability", "shadow", "record", "images",
                      "dashboard")


def parse_config(doc: Located, env: Mapping[str, str] | None = None) -> GatewayConfig:
    env = os.environ if env is None else env
    top = _Section(doc, (), doc.data if doc.data is not None else {}, env)
    server = ServerConfig()
    s = top.section("server")
    if s is not None:
        server = ServerConfig(
            host=s.str("host", server.host) or server.host,
            port=s.number("port", server.port, minimum=0, maximum=65535, integer=True),
            max_body_bytes=s.number("max_body_bytes", server.max_body_bytes, minimum=1024, integer=True),
            drain_seconds=s.number("drain_seconds", server.drain_seconds, minimum=0),
            read_timeout=s.number("read_timeout", server.read_timeout, minimum=0.1),
            idle_timeout=s.number("idle_timeout", server.idle_timeout, minimum=0.1),
            write_timeout=s.number("write_timeout", server.write_timeout, minimum=0.1),
        )
        s.done()
    storage = StorageConfig()
    s = top.section("storage")
    if s is not None:
        storage = StorageConfig(
            sqlite_path=s.str("sqlite_path", storage.sqlite_path) or storage.sqlite_path,
            database_url=s.secret("database_url"),
            redis_url=s.secret("redis_url"),
            store_prompts=s.bool("store_prompts", False),
            log_flush_seconds=s.number("log_flush_seconds", storage.log_flush_seconds, minimum=0.001),
        )
        s.done()
    master_key = None
    s = top.section("auth")
    if s is not None:
        master_key = s.secret("master_key")
        s.done()
    if master_key is None and env.get("SWITCHBOARD_MASTER_KEY"):
        master_key = Secret(env["SWITCHBOARD_MASTER_KEY"], "$SWITCHBOARD_MASTER_KEY")
    default_timeouts = _timeouts(top.section("timeouts"), Timeouts())
    reliability, redis_namespace = DEFAULT_RELIABILITY, "switchboard"
    s = top.section("reliability")
    if s is not None:
        reliability = read_reliability(s, reliability)
        redis_namespace = s.str("redis_namespace", redis_namespace) or redis_namespace
        s.done()
    models: dict[str, ModelConfig] = {}
    raw_models = top.raw("models")
    if raw_models is None:
        raw_models = {}
    if not isinstance(raw_models, dict):
        raise doc.error(("models",), "must be a mapping from model name to its settings")
    wildcards: dict[str, WildcardModel] = {}
    for name, value in raw_models.items():
        sec = _Section(doc, ("models", name), value, env)
        if isinstance(name, str) and "*" in name:
            from switchboard.wildcards import parse_wildcard

            wildcards[name] = parse_wildcard(sec, name, default_timeouts, reliability)
        else:
            models[name] = _model(sec, name, default_timeouts, reliability)
    for key in EXTENSION_SECTIONS:
        top.raw(key)
    top.done()
    if wildcards:
        _make_referenced(doc, models, wildcards)
    for model in models.values():
        for chain in (model.fallbacks, model.context_fallbacks, model.policy_fallbacks):
            for target in chain:
                if target not in models:
                    raise doc.error(("models", model.name), f"fallback {target!r} is not a configured model")
    return GatewayConfig(models=models, server=server, storage=storage, master_key=master_key,
                         source=doc.source, raw=doc.data or {}, doc=doc, reliability=reliability,
                         redis_namespace=redis_namespace, wildcards=wildcards)


def _make_referenced(doc: Located, models: dict[str, ModelConfig], wildcards: dict[str, WildcardModel]) -> None:
    """Add to `models` each model the config names elsewhere (a fallback, a router's strong model, a limit...)
    that only a wildcard covers, made as if written out, so every check and table sees it from the start."""
    from switchboard.wildcards import billable, matching, model_references

    for path, name in model_references(doc.data if isinstance(doc.data, dict) else {}):
        wildcard = None if name in models else matching(wildcards.values(), name)
        if wildcard is None:
            continue
        model = wildcard.build(name)
        if not billable(wildcard, model):
            raise doc.error(path, f"{name!r} has no known price: give {wildcard.pattern} a pricing, "
                                  f"or list the model with its own")
        models[name] = model


def load_config(path: str | os.PathLike, env: Mapping[str, str] | None = None) -> GatewayConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", source=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=str(p)) from None
    return parse_config(load_located(text, str(p)), env)


def config_from_dict(data: dict[str, Any], env: Mapping[str, str] | None = None, source: str = "<dict>") -> GatewayConfig:
    """Build a config from an in-memory mapping (zero-config discovery, tests)."""
    return parse_config(Located(data, {}, source), env)
