"""Config validation names the bad key and its line; zero config discovers providers or starts the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import openai
import pytest

from support import Proc, free_port, http
from switchboard.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "switchboard.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path, text, env=None):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env or {"KEY": "k"})
    return str(info.value)


def test_valid_config_uses_catalog_prices_and_env_secrets(tmp_path):
    config = load_config(write(tmp_path, """
        auth:
          master_key: ${MASTER}
        models:
          gpt-4o-mini:
            deployments:
              - provider: openai
                api_key: ${KEY}
          local:
            deployments:
              - provider: openai
                base_url: http://localhost:8000/v1
                model: meta-llama/Llama-3.1-8B-Instruct
            pricing: {input_per_mtok: 0, output_per_mtok: 0}
    """), {"KEY": "sk-secret-value", "MASTER": "m"})
    model = config.models["gpt-4o-mini"]
    assert model.pricing.input_per_mtok == 0.15 and model.context_window == 128000
    assert "vision" in model.capabilities
    dep = model.deployments[0]
    assert dep.api_key.reveal() == "sk-secret-value"
    assert "sk-secret-value" not in repr(dep) and "sk-secret-value" not in repr(config)
    assert config.models["local"].deployments[0].upstream_model == "meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("text,expected", [
    ("""
     models:
       m:
         deployments:
           - provider: opneai
     """, ":5: models.m.deployments[0].provider: must be one of openai"),
    ("""
     models:
       m:
         deployments:
           - provider: openai
             api_key: sk-live-inline
     """, ":6: models.m.deployments[0].api_key: must be an environment reference"),
    ("""
     models:
       m:
         deployments:
           - provider: openai
             api_key: ${MISSING}
     """, "environment variable MISSING is not set"),
    ("""
     models:
       m:
         deployments:
           - provider: openai
         temprature: 3
     """, ":6: models.m.temprature: unknown key 'temprature'"),
    ("""
     server:
       port: high
     """, ":3: server.port: must be an integer"),
    ("""
     models:
       m:
         deployments: []
     """, "models.m.deployments: must be a non-empty list"),
    ("""
     models:
       m:
         deployments:
           - provider: openai
         fallbacks: [ghost]
     """, "fallback 'ghost' is not a configured model"),
    ("""
     models:
       m: {deployments: [{provider: openai}]}
       m: {deployments: [{provider: openai}]}
     """, ":4: models.m: duplicate key 'm'"),
    ("models: [\n", "invalid YAML"),
    ("""
     models:
       m:
         deployments:
           - provider: bedrock
             guardrail: {id: gr-1}
     """, ":6: models.m.deployments[0].guardrail.version: is required"),
    ("""
     models:
       m:
         deployments:
           - provider: bedrock
             guardrail: {id: gr-1, version: DRAFT, trace: loud}
     """, "guardrail.trace: must be one of enabled, disabled, enabled_full"),
    ("""
     models:
       m:
         deployments:
           - provider: openai
             guardrail: {id: gr-1, version: 1}
     """, "models.m.deployments[0].guardrail: is a Bedrock option"),
    ("""
     models:
       m:
         deployments:
           - provider: openai
             max_stop_sequences: -1
     """, ":6: models.m.deployments[0].max_stop_sequences: must be at least 0"),
    ("""
     models:
       gpt*:
         deployments: [{provider: openai}]
     """, "models.gpt*: a wildcard model is a prefix ending in /*, such as openai/*"),
    ("""
     models:
       openai/*:
         deployments:
           - provider: openai
             model: gpt-4o
     """, ":6: models.openai/*.deployments[0].model: in a wildcard model must hold one *"),
    ("""
     models:
       openai/*:
         deployments: [{provider: openai, colour: blue}]
     """, "models.openai/*.deployments[0].colour"),
    ("""
     models:
       openai/*: {pricing: {input_per_mtok: 1}}
     """, "models.openai/*.deployments: must be a non-empty list"),
    ("""
     models:
       openai/*: {deployments: [gpt-4o]}
     """, "models.openai/*.deployments[0]: must be a mapping"),
    ("""
     models:
       openai/*: {deployments: [{provider: openai}]}
       m:
         deployments: [{provider: openai}]
         fallbacks: [openai/a-model-nobody-priced]
     """, ":6: models.m.fallbacks: 'openai/a-model-nobody-priced' has no known price: give openai/* a pricing"),
    ("""
     models:
       openai/*: {deployments: [{provider: openai}]}
       m:
         deployments: [{provider: openai}]
         fallbacks: [openai/gpt-4o, mistral/small]
     """, "models.m: fallback 'mistral/small' is not a configured model"),
    ("""
     models:
       m:
         deployments: [{provider: openai}]
         pricing: {input_per_mtok: .nan}
     """, ":5: models.m.pricing.input_per_mtok: must be a number (finite)"),
    ("""
     server: {port: "${NOPE_PORT}"}
     """, "server.port: environment variable NOPE_PORT is not set"),
    ("""
     base: &base {provider: openai}
     models:
       m:
         deployments: [{<<: *base, model: x}]
     """, "merge keys are not supported"),
])
def test_bad_config_names_key_and_line(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_serve_refuses_bad_config_with_exit_code_2(tmp_path):
    path = write(tmp_path, """
        models:
          m:
            deployments:
              - provider: nope
    """)
    result = subprocess.run([sys.executable, "-m", "switchboard", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "config error" in result.stderr and ":5: models.m.deployments[0].provider" in result.stderr


def _clean_env():
    from switchboard.discovery import KNOWN_PROVIDERS

    return {k: v for k, v in os.environ.items() if k not in KNOWN_PROVIDERS and not k.startswith("SWITCHBOARD")}


def test_zero_config_starts_the_demo_and_answers_the_readme_curl(tmp_path):
    port = free_port()
    env = _clean_env()
    proc = Proc(["serve", "--port", str(port)], f"http://127.0.0.1:{port}", tmp_path / "demo.log")
    try:
        # The README's curl: no content-type subtleties, no key.
        status, headers, body = http("POST", proc.url + "/v1/chat/completions",
                                     {"model": "demo-small", "messages": [{"role": "user", "content": "Hello!"}]})
        assert status == 200
        reply = json.loads(body)
        assert "simulated" in reply["choices"][0]["message"]["content"]
        client = openai.OpenAI(api_key="anything", base_url=proc.url + "/v1")
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="demo-large", stream=True, messages=[{"role": "user", "content": "Stream, please"}]) if c.choices)
        assert text.startswith("This is a simulated reply from demo-large")
        assert {m.id for m in client.models.list()} >= {"demo-small", "demo-large"}
        log = proc.log()
        assert "DEMO" in log and "SIMULATED" in log
    finally:
        proc.stop()
    assert env is not None


def test_zero_config_discovers_providers_from_environment():
    from switchboard.discovery import discover_env

    models, notes = discover_env({"OPENAI_API_KEY": "sk-1", "GROQ_API_KEY": "g", "ANTHROPIC_API_KEY": "a"},
                                 {"openai", "anthropic"})
    assert models["gpt-4o-mini"]["deployments"][0]["api_key"] == "${OPENAI_API_KEY}"
    assert models["llama-3.1-8b-instant"]["deployments"][0]["base_url"] == "https://api.groq.com/openai/v1"
    assert "claude-sonnet-4-5" in models
    assert any("GROQ_API_KEY" in n for n in notes)


@pytest.mark.parametrize("cascade, expected", [
    ("{check: verifier}", "routers.auto.cascade.verifier: is required when check is 'verifier'"),
    ("{check: verifier, verifier: DEFAULT}", "not an answer verifier"),
    ("{check: verifier, verifier: /nonexistent/v.npz}", "no router file at /nonexistent/v.npz"),
    ("{check: json}, router: /nonexistent/r.npz", "routers.auto: no router file at /nonexistent/r.npz"),
    ("{check: json}, strong_share: 0.3, quality_target: 0.8",
     "routers.auto.quality_target: give only one of threshold, strong_share, quality_target"),
    ("{check: verifier, verifier: v.npz, escalate_share: 0.2, quality_target: 0.8}",
     "routers.auto.cascade.quality_target: give only one of threshold, escalate_share, quality_target"),
    ("{check: json}, quality_target: 1.5", "routers.auto.quality_target: must be at most 1"),
    ("{check: json}, quality_target: 0.8, router: BARE", "has no stored quality curve"),
    # this started, and every cascaded request paid for the weak call and then got a 500
    ('{check: regex, pattern: "(unclosed"}', "routers.auto.cascade.pattern: not a regular expression (missing )"),
    # this started, and the pattern was never read: every answer was checked as JSON
    ('{check: json, pattern: "^ok"}', "routers.auto.cascade.pattern: applies only when check is 'regex'"),
    # this started, and every request the score decided was a 500 (a verifier cannot score a prompt alone)
    ("{check: json}, router: VERIFIER", "holds an answer verifier, not a prompt router"),
])
def test_serve_refuses_a_bad_cascade_verifier_or_router_file(tmp_path, cascade, expected):
    from switchboard.routing.smart.router import DEFAULT_ROUTER_PATH

    if "BARE" in cascade:  # a router file from before quality curves
        with np.load(DEFAULT_ROUTER_PATH) as z:
            np.savez(tmp_path / "bare.npz", **{k: z[k] for k in z.files if not k.startswith("quality_")})
    if "VERIFIER" in cascade:  # a verifier trained on rated answers, as the feedback export gives them
        data = tmp_path / "rated.jsonl"
        data.write_text("".join(json.dumps({"prompt": f"what is {i} + {i}?", "weak_answer": f"it is {i + i % 3}",
                                            "winner": "weak" if i % 3 == 0 else "strong"}) + "\n" for i in range(30)))
        trained = subprocess.run([sys.executable, "-m", "switchboard", "router", "train", "--kind", "verifier",
                                  "--data", str(data), "--out", str(tmp_path / "verifier.npz")],
                                 capture_output=True, text=True, timeout=120)
        assert trained.returncode == 0, trained.stderr
    cascade = cascade.replace("DEFAULT", str(DEFAULT_ROUTER_PATH)).replace("BARE", str(tmp_path / "bare.npz"))
    cascade = cascade.replace("VERIFIER", str(tmp_path / "verifier.npz"))
    path = write(tmp_path, f"""
        models:
          a: {{deployments: [{{provider: openai, base_url: "http://127.0.0.1:9/v1"}}]}}
          b: {{deployments: [{{provider: openai, base_url: "http://127.0.0.1:9/v1"}}]}}
        routers:
          auto: {{strong: a, weak: b, cascade: {cascade}}}
    """)
    result = subprocess.run([sys.executable, "-m", "switchboard", "serve", "--config", str(path), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "config error" in result.stderr and expected in result.stderr


@pytest.mark.parametrize("weak, refused", [
    ("{provider: anthropic, model: claude-haiku-4-5}", "deployment b#0 (provider anthropic)"),
    ("{provider: openai, model: o4-mini}", "deployment b#0 (an OpenAI reasoning model)"),
    ("{provider: openai, model: my-proxy, reasoning: true}", "deployment b#0 (an OpenAI reasoning model)"),
    ("{provider: bedrock, model: anthropic.claude-3-haiku-20240307-v1:0}", "deployment b#0 (provider bedrock)"),
    ("{provider: openai, model: gpt-4o-mini}", None),
    ("{provider: gemini, model: gemini-2.5-flash}", None),
])
def test_a_logprob_cascade_needs_a_weak_model_that_returns_logprobs(tmp_path, weak, refused):
    from switchboard.routing.auto import parse_routers

    config = load_config(write(tmp_path, f"""
        models:
          a: {{deployments: [{{provider: openai, model: gpt-4o, api_key: "${{KEY}}"}}]}}
          b: {{deployments: [{{api_key: "${{KEY}}", {weak[1:]}]}}
        routers:
          auto: {{strong: a, weak: b, cascade: {{check: logprob}}}}
    """), {"KEY": "k"})
    if refused is None:
        assert parse_routers(config)["auto"].cascade.check == "logprob"
        return
    with pytest.raises(ConfigError) as info:
        parse_routers(config)
    assert "routers.auto.cascade.check: 'logprob' needs log-probabilities" in str(info.value)
    assert refused in str(info.value)


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("models: {caf\xe9: {deployments: [{provider: openai}]}}".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, {})


ROUTER_MODELS = """
    models:
      a: {deployments: [{provider: openai, model: gpt-4o, api_key: "${KEY}"}]}
      b: {deployments: [{provider: openai, model: gpt-4o-mini, api_key: "${KEY}"}]}
      emb: {deployments: [{provider: openai, model: text-embedding-3-small, api_key: "${KEY}"}]}
      own-emb:
        deployments: [{provider: openai, model: my-embedder, api_key: "${KEY}"}]
        capabilities: [embeddings]
    routers:
      auto:
"""


@pytest.mark.parametrize("router, expected", [
    # an embedding model named where a router sends chat requests (the catalog, or the config, says what it is)
    ("strong: a\nweak: emb", ":12: routers.auto.weak: 'emb' is an embedding model"),
    ("strong: own-emb\nweak: b", ":11: routers.auto.strong: 'own-emb' is an embedding model"),
    ("strong: a\nweak: b\ntools_model: emb", ":13: routers.auto.tools_model: 'emb' is an embedding model"),
    ("strong: a\nweak: b\nroutes: [{name: code, model: emb, examples: [fix this bug]}]",
     ":13: routers.auto.routes[0].model: 'emb' is an embedding model"),
    ("strong: a\nweak: b\ncascade: {check: judge, judge_model: emb}",
     ":13: routers.auto.cascade.judge_model: 'emb' is an embedding model"),
    # two routes of one name: the log's `intent:NAME` could not say which decided
    ("strong: a\nweak: b\nroutes:\n  - {name: code, model: a, examples: [fix this bug]}\n"
     "  - {name: code, model: b, examples: [write a function]}",
     ":15: routers.auto.routes[1].name: duplicate route name 'code' (routes[0] has it too)"),
    ("strong: a\nweak: b\nroutes:\n  - {name: route1, model: a, examples: [fix this bug]}\n"
     "  - {model: b, examples: [write a function]}",
     "routers.auto.routes[1].name: duplicate route name 'route1'"),
    # a key of another check was silently ignored
    ("strong: a\nweak: b\ncascade: {check: json, pattern: '^\\\\{'}",
     ":13: routers.auto.cascade.pattern: applies only when check is 'regex' (check is 'json')"),
    ("strong: a\nweak: b\ncascade: {pattern: '^ok'}",
     "routers.auto.cascade.pattern: applies only when check is 'regex' (check is 'json')"),
    ("strong: a\nweak: b\ncascade: {check: regex, pattern: '^ok', judge_model: a}",
     "routers.auto.cascade.judge_model: applies only when check is 'judge' (check is 'regex')"),
    ("strong: a\nweak: b\ncascade: {check: judge, judge_model: a, escalate_share: 0.2}",
     "routers.auto.cascade.escalate_share: applies only when check is 'verifier' (check is 'judge')"),
])
def test_a_router_refuses_models_routes_and_keys_it_would_misuse(tmp_path, router, expected):
    from switchboard.routing.auto import parse_routers

    text = textwrap.dedent(ROUTER_MODELS) + textwrap.indent(router, " " * 4) + "\n"
    config = load_config(write(tmp_path, text), {"KEY": "k"})
    with pytest.raises(ConfigError) as info:
        parse_routers(config)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_a_router_accepts_chat_models_distinct_routes_and_its_checks_keys(tmp_path):
    from switchboard.routing.auto import parse_routers

    router = ("strong: a\nweak: b\nroutes:\n  - {name: code, model: a, examples: [fix this bug]}\n"
              "  - {model: b, examples: [say hi]}\ncascade: {check: regex, pattern: '^ok'}")
    text = textwrap.dedent(ROUTER_MODELS) + textwrap.indent(router, " " * 4) + "\n"
    settings = parse_routers(load_config(write(tmp_path, text), {"KEY": "k"}))["auto"]
    assert [r.name for r in settings.routes] == ["code", "route1"] and settings.cascade.pattern == "^ok"
