"""Keys, credits, budgets, rate limits, idempotency and usage reports on one gateway with its default SQLite store."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
import zlib

import openai
import pytest
from support import GatewayProc, MockProc, http, wait_for
from switchboard.testing.pdf import PAGE_TOKENS, build_pdf

MASTER = "sk-accounts-master-0123456789"
ADMIN = {"authorization": f"Bearer {MASTER}"}
REPLY = "abcdefghij abcdefghij abcdefghij abcdefg"  # 10 tokens to the mock
PRICING = {"input_per_mtok": 10_000.0, "output_per_mtok": 20_000.0}  # 1 cent per prompt token, 2 per completion


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accounts")
    mock = MockProc(tmp, {"m-up": {"reply": REPLY}, "quiet-up": {"reply": REPLY, "report_usage": False},
                          "slow-quiet-up": {"reply": "word " * 400, "report_usage": False, "tokens_per_second": 40},
                          "late-up": {"reply": REPLY, "ttft": 0.6},
                          "err-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]}})
    base = mock.url + "/v1"

    def model(upstream):
        return {"deployments": [{"provider": "openai", "model": upstream, "base_url": base}], "pricing": PRICING}

    config = {"auth": {"master_key": "${SB_MASTER}"}, "storage": {"log_flush_seconds": 0.05},
              "accounts": {"model_limits": {"capped": {"rpm": 3}}},
              "models": {"m": model("m-up"), "other": model("m-up"), "quiet": model("quiet-up"),
                         "late": model("late-up"),
                         "slow-quiet": model("slow-quiet-up"),
                         "broken": model("err-up"), "capped": model("m-up"),
                         "mini": model("gpt-4o-mini"),  # the catalog: one image may become 48,169 prompt tokens
                         "mini-small-images": {**model("gpt-4o-mini"), "image_tokens": 500},
                         "small-window": {**model("m-up"), "context_window": 2000},
                         # gemini-2.0-flash-lite's prices: a prompt token is 75 nano-dollars
                         "lite": {**model("m-up"), "pricing": {"input_per_mtok": 0.075, "output_per_mtok": 0.3}}}}
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER})
    yield gw, mock
    gw.stop()
    mock.stop()


@pytest.fixture(scope="module")
def pg_gateway(stack, tmp_path_factory):
    """A second gateway on the same mock, storing in Postgres (a private schema, dropped afterwards)."""
    from test_replicas import PG_URL, pg_query, require_services

    require_services()
    tmp = tmp_path_factory.mktemp("accounts-pg")
    schema = f"sbtest_{uuid.uuid4().hex[:10]}"
    base = stack[1].url + "/v1"
    config = {"auth": {"master_key": "${SB_MASTER}"},
              "storage": {"database_url": "${SB_DB}", "log_flush_seconds": 0.05},
              "models": {"m": {"deployments": [{"provider": "openai", "model": "m-up", "base_url": base}],
                               "pricing": PRICING}}}
    env = {"SB_MASTER": MASTER, "SB_DB": f"{PG_URL}?search_path={schema}"}
    gw = GatewayProc(tmp, config, env=env)
    gw.env = env
    yield gw
    gw.stop()
    asyncio.run(pg_query(PG_URL, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def admin(gw, method, path, body=None):
    status, headers, raw = http(method, gw.url + path, body, ADMIN)
    return status, (json.loads(raw) if raw and headers.get("content-type", "").startswith("application/json") else raw)


def new_key(gw, **fields):
    status, data = admin(gw, "POST", "/admin/keys", fields)
    assert status == 201, data
    return data["id"], data["key"]


def client_for(gw, key):
    return openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=10)


def ask(client, model="m", **extra):
    return client.chat.completions.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                          **extra)


def test_key_lifecycle_and_secret_is_stored_only_hashed(stack):
    gw, _ = stack
    key_id, key = new_key(gw, name="app-a", team="web", allowed_models=["m"], rpm=100, metadata={"env": "prod"})
    assert key.startswith(f"sk-sb-{key_id}-")
    assert ask(client_for(gw, key)).choices[0].message.content == REPLY
    status, listed = admin(gw, "GET", "/admin/keys")
    view = next(k for k in listed["data"] if k["id"] == key_id)
    assert view["prefix"] == f"sk-sb-{key_id}" and "key" not in view and "hash" not in view
    assert view["team"] == "web" and view["metadata"] == {"env": "prod"}
    status, updated = admin(gw, "PATCH", f"/admin/keys/{key_id}", {"allowed_models": ["m", "other"], "tpm": 5000})
    assert status == 200 and updated["allowed_models"] == ["m", "other"] and updated["tpm"] == 5000
    secret = key.split("-", 3)[3]
    conn = sqlite3.connect(gw.db)
    row = conn.execute("SELECT salt, hash FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert secret not in dump and row[1] != secret and len(row[0]) == 32
    status, revoked = admin(gw, "DELETE", f"/admin/keys/{key_id}")
    assert revoked["status"] == "revoked"
    time.sleep(0.6)
    with pytest.raises(openai.AuthenticationError) as err:
        ask(client_for(gw, key))
    assert err.value.code == "key_revoked"
    assert secret not in gw.log() and key not in gw.log()


def test_a_credit_hold_bounds_what_the_request_can_cost(stack):
    gw, mock = stack
    # digits are a token each, four times the usual estimate: the hold counts the prompt's bytes, a true bound
    digits = "1 2 3 4 5 6 7 8 9 0 " * 100  # 2,000 bytes; the mock counts 1,000 tokens = $10
    key_id, key = new_key(gw, credits_usd=15.0)
    with pytest.raises(openai.APIStatusError) as err:  # up to $20.08 + $0.20 of output: more than $15
        client_for(gw, key).chat.completions.create(model="quiet", max_tokens=10,
                                                    messages=[{"role": "user", "content": digits}])
    assert err.value.status_code == 402 and "may cost up to $20.2800" in err.value.message
    # with enough held, the charge stays within the balance
    key_id, key = new_key(gw, credits_usd=25.0)
    client_for(gw, key).chat.completions.create(model="quiet", max_tokens=10,
                                                messages=[{"role": "user", "content": digits}])
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    assert 0 <= view["credit"]["balance_usd"] < 15 and view["credit"]["reserved_usd"] == 0
    # without max_tokens the hold assumes default_max_output_tokens (4,096), and the upstream is held to it
    key_id, key = new_key(gw, credits_usd=100.0)
    client_for(gw, key).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert mock.stats()["last_request"]["max_tokens"] == 4096
    # an absurd max_tokens is a 402, not an overflow
    with pytest.raises(openai.APIStatusError) as err:
        client_for(gw, key).chat.completions.create(model="m", max_tokens=2**53, messages=[{"role": "user",
                                                                                           "content": "hi"}])
    assert err.value.status_code == 402


def test_an_image_is_held_at_the_most_tokens_the_model_can_make_of_it(stack):
    gw, _ = stack
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}]
    _, key = new_key(gw, credits_usd=100.0)
    client = client_for(gw, key)
    # a model of unknown image cost: image_reserve_tokens (3,000) = $30 and a bit; $100 covers it
    assert client.chat.completions.create(model="m", max_tokens=10, messages=messages).choices[0].message.content
    with pytest.raises(openai.APIStatusError) as err:  # gpt-4o-mini: 8 tiles of 5,667 + 2,833 = 48,169 tokens
        client.chat.completions.create(model="mini", max_tokens=10, messages=messages)
    # (48,169 + 8 framing + 11 bytes of text) prompt tokens at 1 cent, 10 output tokens at 2 cents
    assert err.value.status_code == 402 and "may cost up to $482.0800" in err.value.message, err.value.message
    # the model's own image_tokens in the config replaces the catalog's
    assert client.chat.completions.create(model="mini-small-images", max_tokens=10, messages=messages).id
    # no prompt is longer than the model's context window (128,000 tokens here): three images are held at that
    three = [{"role": "user", "content": [{"type": "text", "text": "compare"}, image, image, image]}]
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="mini", max_tokens=10, messages=three)
    assert err.value.status_code == 402 and "may cost up to $1,280.2000" in err.value.message, err.value.message


def test_a_document_is_held_at_the_context_window(stack):
    gw, mock = stack
    pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64," + base64.b64encode(
        build_pdf(["one page"] * 3)).decode(), "filename": "a.pdf"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "summarise"}, pdf]}]
    key_id, key = new_key(gw, credits_usd=100.0)
    client = client_for(gw, key)
    # a PDF's pages have no bound short of the context window; unknown here: document_reserve_tokens (200,000)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", max_tokens=10, messages=messages)
    assert err.value.status_code == 402 and "may cost up to $2,000." in err.value.message, err.value.message
    # a 2,000-token window bounds it at $20 (and 10 output tokens), and the charge is what the pages cost
    answer = client.chat.completions.create(model="small-window", max_tokens=10, messages=messages)
    assert answer.usage.prompt_tokens > 3 * PAGE_TOKENS
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    charged = 100.0 - view["credit"]["balance_usd"]
    assert charged == pytest.approx(answer.usage.prompt_tokens * 0.01 + answer.usage.completion_tokens * 0.02)
    assert view["credit"]["reserved_usd"] == 0


def test_admin_api_is_master_only_and_validates(stack):
    gw, _ = stack
    _, key = new_key(gw, name="not-admin")
    status, _, body = http("GET", gw.url + "/admin/keys", headers={"authorization": f"Bearer {key}"})
    assert status == 403 and json.loads(body)["error"]["code"] == "admin_only"
    assert http("GET", gw.url + "/admin/keys")[0] == 401
    for bad, param in (({"rpm": -1}, "rpm"), ({"allowed_models": ["nope"]}, "allowed_models"), ({"colour": 1}, "colour"),
                       ({"budgets": [{"period": "year", "limit_usd": 1}]}, "budgets"),
                       ({"budgets": [{"period": "day", "limit_usd": 1, "soft": "yes"}]}, "budgets"),
                       ({"budgets": [{"period": "day", "limit_usd": 1}, {"period": "day", "limit_usd": 2}]}, "budgets"),
                       ({"model_limits": {"nope": {"rpm": 1}}}, "model_limits")):
        status, data = admin(gw, "POST", "/admin/keys", bad)
        assert status == 400 and data["error"]["param"] == param, data
    assert admin(gw, "GET", "/admin/keys/000000000000")[0] == 404
    status, _, body = http("POST", gw.url + "/admin/keys", raw=b"{not json", headers=ADMIN)
    assert status == 400 and "JSON" in json.loads(body)["error"]["message"]
    # out-of-range amounts and limits are 400s, and nothing is created
    before = len(admin(gw, "GET", "/admin/keys")[1]["data"])
    for bad, param in (({"credits_usd": 1e10}, "credits_usd"), ({"credits_usd": 1e308}, "credits_usd"),
                       ({"budgets": [{"period": "day", "limit_usd": 1e10}]}, "budgets"),
                       ({"tpm": 3_000_000_000}, "tpm"),
                       ({"max_parallel": 2**63}, "max_parallel")):
        status, data = admin(gw, "POST", "/admin/keys", bad)
        assert status == 400 and data["error"]["param"] in (param, "limit_usd"), data
    assert len(admin(gw, "GET", "/admin/keys")[1]["data"]) == before
    key_id, _ = new_key(gw, credits_usd=900_000_000.0)
    status, data = admin(gw, "POST", f"/admin/keys/{key_id}/credits", {"amount_usd": 900_000_000.0})
    assert status == 400 and data["error"]["param"] == "amount_usd"  # the balance would pass $1,000,000,000
    assert admin(gw, "POST", f"/admin/keys/{key_id}/credits", {"amount_usd": -1e308, "kind": "adjustment"})[0] == 400
    assert admin(gw, "GET", f"/admin/keys/{key_id}/ledger")[0] == 200
    # a PATCH that fails changes nothing
    status, _ = admin(gw, "PATCH", f"/admin/keys/{key_id}", {"rpm": 5, "budgets": [{"period": "year"}]})
    assert status == 400 and admin(gw, "GET", f"/admin/keys/{key_id}")[1]["rpm"] is None
    assert admin(gw, "PATCH", f"/admin/keys/{key_id}", {"name": None})[0] == 400
    status, _ = admin(gw, "PATCH", "/admin/teams/careful", {"prepaid": True, "budgets": [{"period": "week"}]})
    assert status == 400 and admin(gw, "GET", "/admin/teams/careful")[1]["prepaid"] is False
    for query in ("/admin/ledger?before=99999999999999999999999", "/admin/usage?since=nan", "/admin/usage?until=inf"):
        assert admin(gw, "GET", query)[0] == 400, query
    # a team name with a space is one team, in the URL (percent-encoded) and in the CLI
    new_key(gw, team="data science")
    status, team = admin(gw, "PATCH", "/admin/teams/data%20science", {"prepaid": True})
    assert status == 200 and team["account"] == "team:data science" and team["prepaid"] is True
    env = {**os.environ, "SWITCHBOARD_MASTER_KEY": MASTER}
    cli = subprocess.run([sys.executable, "-m", "switchboard", "credits", "add", "team:data science", "5",
                          "--url", gw.url], capture_output=True, text=True, timeout=30, env=env)
    assert cli.returncode == 0 and "team:data science: balance $5.0000" in cli.stdout, cli.stderr
    for args in (["keys", "create", "--budget", "month=abc"], ["keys", "create", "--credits", "nan"]):
        cli = subprocess.run([sys.executable, "-m", "switchboard", *args, "--url", gw.url], capture_output=True,
                             text=True, timeout=30, env=env)
        assert cli.returncode != 0 and "Traceback" not in cli.stderr and ("abc" in cli.stderr or "nan" in cli.stderr)
    assert admin(gw, "GET", f"/admin/keys/{key_id}/nope")[0] == 404


def test_model_allow_list_and_expiry(stack):
    gw, _ = stack
    _, key = new_key(gw, allowed_models=["m"])
    with pytest.raises(openai.PermissionDeniedError):
        ask(client_for(gw, key), model="other")
    _, key = new_key(gw, expires_in_seconds=0.3)
    ask(client_for(gw, key))
    time.sleep(0.9)
    with pytest.raises(openai.AuthenticationError) as err:
        ask(client_for(gw, key))
    assert err.value.code == "key_expired"


def test_prepaid_credit_402_and_ledger_is_the_balance(stack):
    gw, mock = stack
    key_id, key = new_key(gw, credits_usd=1.0)  # $0.21 a request, $0.30 held while it runs
    client = client_for(gw, key)
    served = 0
    with pytest.raises(openai.APIStatusError) as err:
        for _ in range(10):
            ask(client)
            served += 1
    assert err.value.status_code == 402 and err.value.code == "insufficient_quota"
    assert "insufficient credit" in err.value.message and "$0.1600 available" in err.value.message
    assert served == 4
    status, ledger = admin(gw, "GET", f"/admin/keys/{key_id}/ledger")
    kinds = [e["kind"] for e in ledger["data"]]
    assert kinds.count("charge") == 4 and kinds.count("topup") == 1
    assert ledger["total_nanousd"] == 1_000_000_000 - 4 * 210_000_000
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    assert view["credit"]["balance_usd"] == pytest.approx(0.16) and view["credit"]["reserved_usd"] == 0
    status, after = admin(gw, "POST", f"/admin/keys/{key_id}/credits", {"amount_usd": 2.5, "note": "top-up"})
    assert status == 201 and after["balance_usd"] == pytest.approx(2.66)
    ask(client)
    status, data = admin(gw, "POST", f"/admin/keys/{key_id}/credits", {"amount_usd": 1, "kind": "charge"})
    assert status == 400


def test_failed_upstream_attempts_are_not_charged_and_holds_are_released(stack):
    gw, _ = stack
    key_id, key = new_key(gw, credits_usd=5.0)
    with pytest.raises(openai.InternalServerError):
        ask(client_for(gw, key), model="broken")
    time.sleep(0.3)
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    assert view["credit"]["balance_usd"] == 5.0 and view["credit"]["reserved_usd"] == 0
    _, ledger = admin(gw, "GET", f"/admin/keys/{key_id}/ledger")
    assert [e["kind"] for e in ledger["data"]] == ["topup"]


def test_idempotency_key_returns_the_first_result_and_charges_once(stack):
    gw, mock = stack
    key_id, key = new_key(gw, credits_usd=5.0)
    client = client_for(gw, key)
    before = mock.stats()["completed"]
    first = client.chat.completions.with_raw_response.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}], extra_headers={"Idempotency-Key": "order-42"})
    again = client.chat.completions.with_raw_response.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}], extra_headers={"Idempotency-Key": "order-42"})
    assert first.parse().id == again.parse().id
    assert again.headers["idempotent-replayed"] == "true"
    assert mock.stats()["completed"] == before + 1
    _, ledger = admin(gw, "GET", f"/admin/keys/{key_id}/ledger")
    assert [e["kind"] for e in ledger["data"]].count("charge") == 1
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "other"}],
                                       extra_headers={"Idempotency-Key": "order-42"})
    assert "different request body" in err.value.message


def test_idempotency_key_on_embeddings_and_anthropic_messages(stack):
    import anthropic

    gw, mock = stack
    key_id, key = new_key(gw, credits_usd=5.0)
    client = client_for(gw, key)
    before = mock.stats()["completed"]
    first = client.embeddings.with_raw_response.create(model="m", input=["alpha", "beta"],
                                                       extra_headers={"Idempotency-Key": "emb-1"})
    again = client.embeddings.with_raw_response.create(model="m", input=["alpha", "beta"],
                                                       extra_headers={"Idempotency-Key": "emb-1"})
    assert again.headers["idempotent-replayed"] == "true"
    assert [d.embedding for d in again.parse().data] == [d.embedding for d in first.parse().data]

    claude = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0, timeout=10)
    ask_claude = dict(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    first_msg = claude.messages.with_raw_response.create(**ask_claude, extra_headers={"Idempotency-Key": "msg-1"})
    again_msg = claude.messages.with_raw_response.create(**ask_claude, extra_headers={"Idempotency-Key": "msg-1"})
    assert again_msg.headers["idempotent-replayed"] == "true"
    replay = again_msg.parse()  # the SDK's own Message type: the replay is in Anthropic's format
    assert replay.type == "message" and replay.id == first_msg.parse().id
    assert replay.content[0].text == first_msg.parse().content[0].text
    assert replay.usage.output_tokens == first_msg.parse().usage.output_tokens

    assert mock.stats()["completed"] == before + 2  # one embeddings call, one chat call upstream
    _, ledger = admin(gw, "GET", f"/admin/keys/{key_id}/ledger")
    assert [e["kind"] for e in ledger["data"]].count("charge") == 2
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "other"}],
                               extra_headers={"Idempotency-Key": "msg-1"})
    assert "different request body" in str(err.value)


def test_idempotency_key_replays_a_completed_stream(stack):
    import anthropic

    gw, mock = stack
    key_id, key = new_key(gw, credits_usd=5.0)
    client = client_for(gw, key)
    before = mock.stats()["completed"]
    ask_stream = dict(model="m", max_tokens=10, messages=[{"role": "user", "content": "tell me a story"}], stream=True,
                      stream_options={"include_usage": True}, extra_headers={"Idempotency-Key": "stream-1"})
    first = list(client.chat.completions.create(**ask_stream))
    raw = client.chat.completions.with_raw_response.create(**ask_stream)
    assert raw.headers["idempotent-replayed"] == "true"
    again = list(raw.parse())
    assert len(first) > 2 and [c.model_dump() for c in again] == [c.model_dump() for c in first]
    assert first[-1].usage is not None and again[-1].usage == first[-1].usage
    # The chunks are stored compressed: the envelope each one repeats costs next to nothing.
    conn = sqlite3.connect(gw.db)
    try:
        (stored,) = conn.execute("SELECT body FROM idempotency WHERE idem_key = 'stream-1'").fetchone()
    finally:
        conn.close()
    chunks = json.loads(zlib.decompress(stored))
    assert [c["id"] for c in chunks] == [c.id for c in first]
    assert len(stored) < len(json.dumps(chunks)) / 3

    claude = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0, timeout=10)
    ask_claude = dict(model="m", max_tokens=10, messages=[{"role": "user", "content": "a poem"}],
                      extra_headers={"Idempotency-Key": "stream-2"})
    with claude.messages.stream(**ask_claude) as s:
        first_msg = s.get_final_message()
    with claude.messages.stream(**ask_claude) as s:
        assert s.response.headers["idempotent-replayed"] == "true"
        again_msg = s.get_final_message()
    assert again_msg.content[0].text == first_msg.content[0].text and first_msg.content[0].text
    assert again_msg.id == first_msg.id and again_msg.usage.output_tokens == first_msg.usage.output_tokens

    assert mock.stats()["completed"] == before + 2  # the replays did not reach the upstream
    _, ledger = admin(gw, "GET", f"/admin/keys/{key_id}/ledger")
    assert [e["kind"] for e in ledger["data"]].count("charge") == 2


def test_rate_limits_rpm_tpm_and_per_model(stack):
    gw, _ = stack
    _, key = new_key(gw, rpm=2)
    client = client_for(gw, key)
    ok = client.chat.completions.with_raw_response.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert ok.headers["x-ratelimit-limit-requests"] == "2" and ok.headers["x-ratelimit-remaining-requests"] == "1"
    ask(client)
    with pytest.raises(openai.RateLimitError) as err:
        ask(client)
    h = err.value.response.headers
    assert int(h["retry-after"]) >= 1 and h["x-ratelimit-remaining-requests"] == "0"
    assert "Limit 2" in err.value.message
    _, key = new_key(gw, tpm=30)  # each request counts 1 prompt + 10 max_tokens at admission
    client = client_for(gw, key)
    ask(client)
    ask(client)
    with pytest.raises(openai.RateLimitError) as err:
        ask(client)
    assert "tokens per minute" in err.value.message
    assert err.value.response.headers["x-ratelimit-limit-tokens"] == "30"
    _, key = new_key(gw, model_limits={"other": {"rpm": 1}})
    client = client_for(gw, key)
    ask(client, model="other")
    ask(client, model="m")
    with pytest.raises(openai.RateLimitError):
        ask(client, model="other")
    _, a = new_key(gw)
    _, b = new_key(gw)
    for k in (a, b, a):
        ask(client_for(gw, k), model="capped")  # the model allows 3 a minute, whoever asks
    with pytest.raises(openai.RateLimitError):
        ask(client_for(gw, b), model="capped")


def test_tpm_counts_the_output_a_request_allows_and_a_refusal_for_credit_uses_no_rate_limit(stack):
    gw, _ = stack
    _, key = new_key(gw, tpm=5000)
    client = client_for(gw, key)
    unbounded = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}  # no max_tokens: up to 4,096 out
    client.chat.completions.create(**unbounded)  # counted as 4,097 at admission, then corrected to 10 + 10
    client.chat.completions.create(**unbounded)
    with pytest.raises(openai.RateLimitError):  # two in flight at once could not both write 4,096 tokens
        asyncio.run(_both(gw, key, {**unbounded, "model": "late"}))  # 0.6 s each: both are in flight at once
    key_id, key = new_key(gw, rpm=2, credits_usd=0.01)  # less than one request's hold
    client = client_for(gw, key)
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as err:
            ask(client)
        assert err.value.status_code == 402
    admin(gw, "POST", f"/admin/keys/{key_id}/credits", {"amount_usd": 10})
    ask(client)  # the refused requests were not counted against the rpm of 2
    ask(client)
    with pytest.raises(openai.RateLimitError):
        ask(client)


def test_the_cost_a_client_is_told_is_the_charge_to_the_nano_dollar(stack):
    gw, _ = stack
    key_id, key = new_key(gw, credits_usd=1)
    client = client_for(gw, key)
    raw = client.chat.completions.with_raw_response.create(model="lite", max_tokens=10,
                                                           messages=[{"role": "user", "content": "hi"}])
    chunks = list(client.chat.completions.create(model="lite", max_tokens=10, stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "hi"}]))
    charges = [-e["amount_nanousd"] for e in admin(gw, "GET", f"/admin/keys/{key_id}/ledger")[1]["data"]
               if e["kind"] == "charge"]
    assert charges == [1 * 75 + 10 * 300] * 2  # nano-dollars: $0.000003075 each
    assert raw.headers["x-switchboard-cost"] == "0.000003075"
    assert chunks[-1].usage.model_dump()["cost"] == 0.000003075


def test_a_request_larger_than_the_tpm_limit_is_told_so_and_not_retried(stack):
    gw, _ = stack
    _, key = new_key(gw, tpm=1000)
    client = openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=2, timeout=10)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as err:  # no max_tokens: it counts 1 + 4,096 tokens, an idle key or not
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 5  # the SDK did not wait out a Retry-After to be refused again
    headers = err.value.response.headers
    assert headers["x-should-retry"] == "false" and "retry-after" not in headers
    assert "4097" in err.value.message and "max_tokens" in err.value.message and "try again" not in err.value.message
    assert ask(client).usage.total_tokens == 11  # a request that fits runs


async def _both(gw, key, body):
    async with openai.AsyncOpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=10) as client:
        await asyncio.gather(*(client.chat.completions.create(**body) for _ in range(2)))


def test_budgets_hard_and_soft(stack):
    gw, _ = stack
    key_id, key = new_key(gw, budgets=[{"period": "day", "limit_usd": 0.9}, {"period": "month", "limit_usd": 0.3, "soft": True}])
    client = client_for(gw, key)
    ask(client)  # $0.21 a request, $0.30 held while it runs: three fit under $0.90, a fourth would not
    raw = client.chat.completions.with_raw_response.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert "x-switchboard-budget-warning" not in raw.headers
    raw = client.chat.completions.with_raw_response.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert "soft month budget" in raw.headers["x-switchboard-budget-warning"]
    with pytest.raises(openai.APIStatusError) as err:
        ask(client)
    assert err.value.status_code == 402 and err.value.code == "budget_exceeded"
    assert "has reached its daily budget of $0.90" in err.value.message
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    day = next(b for b in view["credit"]["budgets"] if b["period"] == "day")
    assert day["spent_usd"] == pytest.approx(0.63) and day["resets_at"] > time.time()


def test_a_budget_added_partway_through_a_period_counts_what_was_spent_in_it(stack):
    gw, _ = stack
    key_id, key = new_key(gw, name="late-budget", team="late-budgeters")
    client = client_for(gw, key)
    for _ in range(3):  # $0.21 each, with no budget yet
        ask(client)
    in_flight = concurrent.futures.ThreadPoolExecutor(1).submit(ask, client, "late")  # answers after 0.6 s
    time.sleep(0.3)
    budgets = [{"period": "day", "limit_usd": 1.0}, {"period": "month", "limit_usd": 1.0}]
    assert admin(gw, "PATCH", f"/admin/keys/{key_id}", {"budgets": budgets})[0] == 200
    assert admin(gw, "PATCH", "/admin/teams/late-budgeters", {"budgets": budgets[:1]})[0] == 200
    in_flight.result(timeout=10)  # settled under the budgets it was admitted without: still counted
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    assert [b["spent_usd"] for b in view["credit"]["budgets"]] == pytest.approx([0.84, 0.84])
    _, team = admin(gw, "GET", "/admin/teams/late-budgeters")
    assert [b["spent_usd"] for b in team["budgets"]] == pytest.approx([0.84])
    with pytest.raises(openai.APIStatusError) as err:  # $0.84 spent + up to $0.30 held: over $1
        ask(client)
    assert err.value.status_code == 402 and err.value.code == "budget_exceeded"


def test_team_prepaid_credit_covers_all_its_keys(stack):
    gw, _ = stack
    status, team = admin(gw, "PATCH", "/admin/teams/ops", {"prepaid": True})
    assert status == 200 and team["prepaid"] is True
    admin(gw, "POST", "/admin/teams/ops/credits", {"amount_usd": 0.5})
    _, k1 = new_key(gw, team="ops")
    _, k2 = new_key(gw, team="ops")
    ask(client_for(gw, k1))
    with pytest.raises(openai.APIStatusError) as err:
        ask(client_for(gw, k2))  # $0.29 left, $0.30 needed
    assert err.value.status_code == 402 and "Team 'ops'" in err.value.message
    _, team = admin(gw, "GET", "/admin/teams/ops")
    assert team["balance_usd"] == pytest.approx(0.29)


def test_stream_without_upstream_usage_is_counted_locally(stack):
    gw, _ = stack
    key_id, key = new_key(gw, credits_usd=5.0)
    chunks = list(client_for(gw, key).chat.completions.create(
        model="quiet", stream=True, max_tokens=20, messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    _, ledger = admin(gw, "GET", f"/admin/ledger?account=key:{key_id}")
    charge = next(e for e in ledger["data"] if e["kind"] == "charge")
    from switchboard.accounting.tokens import count_tokens

    completion = count_tokens(REPLY, "quiet-up")[0]
    assert charge["amount_nanousd"] == -(1 * 10_000_000 + completion * 20_000_000)
    time.sleep(0.2)
    conn = sqlite3.connect(gw.db)
    extra = conn.execute("SELECT extra FROM request_log WHERE key_id = ? AND status = 200", (key_id,)).fetchone()[0]
    conn.close()
    assert json.loads(extra)["usage_counted"] is True
    assert all(c.usage is None for c in chunks)  # the client did not ask for a usage chunk


def test_an_answer_whose_upstream_reports_no_usage_carries_the_gateways_count(stack):
    from switchboard.accounting.tokens import count_tokens

    gw, _ = stack
    _, key = new_key(gw, credits_usd=5.0)
    client = client_for(gw, key)
    expected = (1, count_tokens(REPLY, "quiet-up")[0])  # "hi", and the reply
    answer = client.chat.completions.create(model="quiet", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == expected
    assert answer.usage.total_tokens == sum(expected)
    chunks = list(client.chat.completions.create(model="quiet", stream=True, stream_options={"include_usage": True},
                                                 max_tokens=20, messages=[{"role": "user", "content": "hi"}]))
    last = chunks[-1]  # OpenAI's usage chunk: the last, with no choices
    assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens) == expected
    assert last.id == chunks[0].id and all(c.usage is None for c in chunks[:-1])


def test_a_prompt_of_over_a_million_characters_is_counted_when_the_upstream_reports_none(stack):
    from switchboard.accounting.tokens import count_tokens

    gw, _ = stack
    expected = (400_001, count_tokens(REPLY, "quiet-up")[0])
    client = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=60)
    # 1.2 million characters and 400,001 tokens ("ab", then " ab"s and " "): more than the BPE takes at once
    messages = [{"role": "user", "content": "ab " * 400_000}]
    answer = client.chat.completions.create(model="quiet", max_tokens=20, messages=messages)
    assert answer.choices[0].message.content == REPLY
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == expected
    chunks = list(client.chat.completions.create(model="quiet", stream=True, stream_options={"include_usage": True},
                                                 max_tokens=20, messages=messages))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == expected


def test_images_and_pdfs_count_when_the_upstream_reports_no_usage(stack):
    import io

    from PIL import Image

    gw, _ = stack
    key_id, key = new_key(gw, credits_usd=2500.0)  # a PDF is held at 200,000 tokens where the window is unknown
    picture = io.BytesIO()
    Image.new("RGB", (1024, 1024)).save(picture, "PNG")
    pdf = build_pdf(["one", "two"])
    image = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
    list(client_for(gw, key).chat.completions.create(model="quiet", stream=True, max_tokens=20, messages=[
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64," + base64.b64encode(pdf).decode(),
                                      "filename": "two.pdf"}},
            {"type": "text", "text": "hi"}]}]))
    _, ledger = admin(gw, "GET", f"/admin/ledger?account=key:{key_id}")
    charge = next(e for e in ledger["data"] if e["kind"] == "charge")
    from switchboard.accounting.media_tokens import OPENAI, page_tokens
    from switchboard.accounting.tokens import count_tokens

    prompt = 1 + 765 + 2 * page_tokens(OPENAI)  # "hi", a 1024-pixel square and two pages by OpenAI's rule
    assert charge["amount_nanousd"] == -(prompt * 10_000_000 + count_tokens(REPLY, "quiet-up")[0] * 20_000_000)


def test_a_client_that_hangs_up_mid_stream_is_charged_for_its_image_too(stack):
    import io

    from PIL import Image

    gw, _ = stack
    key_id, key = new_key(gw, credits_usd=1000.0)  # the hold covers the longest answer the window allows
    picture = io.BytesIO()
    Image.new("RGB", (1024, 1024)).save(picture, "PNG")
    image = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
    stream = client_for(gw, key).chat.completions.create(model="slow-quiet", stream=True, messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                     {"type": "text", "text": "hi"}]}])
    request_id = stream.response.headers["x-request-id"]
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or "" if chunk.choices else ""
        if len(received) > 20:
            break
    stream.close()  # hangs up after the first words of a 400-word answer that reports no usage
    entry = wait_for(lambda: [e for e in gw.requests_logged() if e["request_id"] == request_id], timeout=10)[0]
    assert entry["status"] == 499 and 0 < entry["completion_tokens"] < 400
    assert entry["prompt_tokens"] == 1 + 765  # "hi" and the image by OpenAI's rule, counted
    assert json.loads(entry["extra"])["usage_counted"] is True
    charge = wait_for(lambda: [e for e in admin(gw, "GET", f"/admin/ledger?account=key:{key_id}")[1]["data"]
                               if e["kind"] == "charge"], timeout=10)[0]
    assert charge["amount_nanousd"] == -(766 * 10_000_000 + entry["completion_tokens"] * 20_000_000)


def test_a_stream_whose_client_leaves_before_it_begins_is_settled(stack):
    import socket

    gw, _ = stack
    key_id, key = new_key(gw, credits_usd=100.0, max_parallel=1)
    body = json.dumps({"model": "late", "stream": True, "max_tokens": 10,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    with socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer " + key.encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.2)  # the upstream is still thinking (0.6 s to its first chunk) when the client leaves
    entry = wait_for(lambda: [e for e in gw.requests_logged() if e["key_id"] == key_id], timeout=10)
    assert entry and entry[0]["status"] == 499
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    assert view["credit"]["reserved_usd"] == 0  # the hold is released, and the key's one parallel slot is free
    assert ask(client_for(gw, key)).choices[0].message.content == REPLY


def test_usage_report_json_csv_and_cli(stack):
    gw, _ = stack
    key_id, key = new_key(gw, name="reported")
    client = client_for(gw, key)
    ask(client)
    ask(client, model="other")
    with pytest.raises(openai.InternalServerError):
        ask(client, model="broken")
    status, report = admin(gw, "GET", f"/admin/usage?group_by=model&key={key_id}")
    rows = {r["model"]: r for r in report["data"]}
    assert rows["m"]["requests"] == 1 and rows["m"]["cost_usd"] == pytest.approx(0.21)
    assert rows["m"]["completion_tokens"] == 10 and rows["broken"]["errors"] == 1 and rows["broken"]["cost_usd"] == 0
    assert report["totals"]["requests"] == 3
    status, csv_text = admin(gw, "GET", f"/admin/usage?group_by=key,model,day&key={key_id}&format=csv")
    lines = csv_text.decode().splitlines()
    assert lines[0].startswith("key,model,day,requests,errors") and len(lines) == 4
    # a model name is the client's text: in a CSV it must not become a spreadsheet formula
    _, sly = new_key(gw, name="sly")
    with pytest.raises(openai.NotFoundError):
        ask(client_for(gw, sly), model='=HYPERLINK("http://evil.example","click")')
    status, csv_text = admin(gw, "GET", "/admin/usage?group_by=model&format=csv")
    assert status == 200 and "'=HYPERLINK" in csv_text.decode() and "\n=HYPERLINK" not in csv_text.decode()
    env = {"SWITCHBOARD_URL": gw.url, "SWITCHBOARD_MASTER_KEY": MASTER}
    run = lambda *a: subprocess.run([sys.executable, "-m", "switchboard", *a], capture_output=True, text=True,
                                    env={**__import__("os").environ, **env}, timeout=30)
    out = run("usage", "--by", "model", "--key", key_id)
    assert out.returncode == 0 and "broken" in out.stdout and "3 requests, 1 errors" in out.stdout
    out = run("keys", "create", "--name", "from-cli", "--credits", "3", "--rpm", "9")
    assert out.returncode == 0 and "sk-sb-" in out.stdout, out.stderr
    new_id = out.stdout.split()[2]
    out = run("credits", "add", new_id, "2", "--note", "more")
    assert "balance $5.0000" in out.stdout
    out = run("keys", "list")
    assert "from-cli" in out.stdout
    out = run("keys", "revoke", new_id)
    assert "revoked" in out.stdout
    out = run("keys", "show", "000000000000")
    assert out.returncode != 0 and "404" in out.stderr


def test_keys_update_on_the_command_line_lifts_limits_as_well_as_setting_them(stack):
    gw, _ = stack
    env = {**os.environ, "SWITCHBOARD_URL": gw.url, "SWITCHBOARD_MASTER_KEY": MASTER}
    run = lambda *a: subprocess.run([sys.executable, "-m", "switchboard", "keys", *a], capture_output=True, text=True,
                                    env=env, timeout=30)
    key_id, _ = new_key(gw, rpm=5, tpm=500, max_parallel=2, allowed_models=["m"], expires_in_seconds=3600,
                        budgets=[{"period": "month", "limit_usd": 9}])
    out = run("update", key_id, "--models", "")  # was a silent no-op with exit code 0
    assert out.returncode != 0 and "--models" in out.stderr and "'*'" in out.stderr
    out = run("update", key_id, "--rpm", "none", "--tpm", "none", "--max-parallel", "none", "--models", "*",
              "--expires-in", "none", "--no-budgets", "--json")
    assert out.returncode == 0, out.stderr
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    assert (view["rpm"], view["tpm"], view["max_parallel"], view["allowed_models"], view["expires_at"]) == \
        (None, None, None, None, None)
    assert view["credit"]["budgets"] == []
    out = run("update", key_id, "--rpm", "0")
    assert out.returncode != 0 and "'0' is not a whole number of at least 1 or 'none'" in out.stderr


def test_usage_by_team_counts_each_request_for_the_team_charged_then(stack):
    gw, _ = stack
    key_id, key = new_key(gw, name="mover", team="movers-a")
    ask(client_for(gw, key))
    assert admin(gw, "PATCH", f"/admin/keys/{key_id}", {"team": "movers-b"})[0] == 200
    time.sleep(0.6)  # key_cache_seconds: requests from now on are the new team's
    ask(client_for(gw, key))
    ask(client_for(gw, key))
    _, report = admin(gw, "GET", f"/admin/usage?group_by=team&key={key_id}")
    assert {r["team"]: r["requests"] for r in report["data"]} == {"movers-a": 1, "movers-b": 2}
    _, report = admin(gw, "GET", "/admin/usage?group_by=key&team=movers-a")
    assert report["totals"]["requests"] == 1 and report["totals"]["cost_usd"] == pytest.approx(0.21)
    _, ledger = admin(gw, "GET", "/admin/teams/movers-a/ledger")
    assert ledger["total_usd"] == pytest.approx(-report["totals"]["cost_usd"])  # the report agrees with the ledger
    out = subprocess.run([sys.executable, "-m", "switchboard", "usage", "--by", "team", "--key", key_id,
                          "--url", gw.url, "--admin-key", MASTER], capture_output=True, text=True, timeout=30)
    lines = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines() if line.startswith("movers-")}
    assert lines == {"movers-a": "1", "movers-b": "2"}, out.stdout + out.stderr


def test_dashboard_totals_cover_exactly_since_to_until(stack):
    gw, _ = stack
    key_id, key = new_key(gw, name="ranged")
    for _ in range(3):
        ask(client_for(gw, key))
    _, page = admin(gw, "GET", f"/admin/dashboard/requests?key={key_id}")
    t_new, t_mid, t_old = (r["ts"] for r in page["data"])
    since = (t_old + t_mid) / 2  # two of the three requests are from `since` on
    until = since + 2 * 86400  # a two-day range: chart buckets of 30 minutes, the first beginning before `since`
    _, usage = admin(gw, "GET", f"/admin/usage?since={since}&until={until}")
    _, overview = admin(gw, "GET", f"/admin/dashboard/overview?since={since}&until={until}")
    assert overview["totals"]["requests"] == usage["totals"]["requests"]
    assert overview["totals"]["spend"] == pytest.approx(usage["totals"]["cost_usd"])
    assert next(k for k in overview["top_keys"] if k["key_id"] == key_id)["requests"] == 2
    assert overview["series"][0]["t"] <= since and sum(b["requests"] for b in overview["series"]) == \
        overview["totals"]["requests"]
    until = (t_mid + t_new) / 2  # only the middle request
    _, keys = admin(gw, "GET", f"/admin/dashboard/keys-usage?since={since}&until={until}")
    assert keys["data"][key_id]["spend_recent"] == pytest.approx(0.21) and keys["data"][key_id]["requests"] == 3


def test_pages_say_has_more_only_when_there_is_more_and_refuse_a_limit_below_one(stack):
    gw, _ = stack
    key_id, key = new_key(gw, name="pages", credits_usd=1)  # one ledger entry
    ledger = f"/admin/keys/{key_id}/ledger"
    _, page = admin(gw, "GET", ledger + "?limit=1")
    assert len(page["data"]) == 1 and page["has_more"] is False
    admin(gw, "POST", f"/admin/keys/{key_id}/credits", {"amount_usd": 2})
    _, page = admin(gw, "GET", ledger + "?limit=1")
    assert len(page["data"]) == 1 and page["has_more"] is True
    _, rest = admin(gw, "GET", ledger + f"?limit=1&before={page['data'][0]['id']}")
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    _, page = admin(gw, "GET", f"/admin/ledger?account=key:{key_id}&limit=2")
    assert len(page["data"]) == 2 and page["has_more"] is False
    for path in (ledger + "?limit=0", ledger + "?limit=-5", "/admin/ledger?limit=0", ledger + "?limit=x",
                 "/admin/dashboard/requests?limit=0"):
        status, err = admin(gw, "GET", path)
        assert status == 400 and err["error"]["param"] == "limit", (path, err)
    client = client_for(gw, key)
    ask(client)
    ask(client)
    requests = f"/admin/dashboard/requests?key={key_id}"
    _, page = admin(gw, "GET", requests + "&limit=2")
    assert len(page["data"]) == 2 and page["has_more"] is False
    _, page = admin(gw, "GET", requests + "&limit=1")
    assert len(page["data"]) == 1 and page["has_more"] is True and page["next_before"] == page["data"][0]["ts"]


def test_admin_query_checks_csv_header_and_method_errors(stack):
    gw, _ = stack
    for path, param in (("/admin/usage?format=xml", "format"), ("/admin/usage?group_by=key,key", "group_by"),
                        ("/admin/keys?include_revoked=maybe", "include_revoked"),
                        ("/admin/dashboard/requests?since=10&until=5", "since"),
                        ("/admin/usage?since=10&until=5", "since"), ("/admin/usage?since=5&until=5", "since")):
        status, err = admin(gw, "GET", path)
        assert status == 400 and err["error"]["param"] == param, (path, err)
        assert param != "format" or "json or csv" in err["error"]["message"]
    assert admin(gw, "GET", "/admin/keys?include_revoked=false")[0] == 200
    status, body = admin(gw, "GET", "/admin/usage?format=csv&group_by=team,model&since=1&until=2")
    assert status == 200 and body.decode() == ("team,model,requests,errors,prompt_tokens,completion_tokens,cost_usd,"
                                               "avg_latency_ms,max_latency_ms\n")
    key_id, _ = new_key(gw, name="methods")
    for method, path, allowed in (("PUT", f"/admin/keys/{key_id}", "DELETE, GET, PATCH"),
                                  ("POST", f"/admin/keys/{key_id}", "DELETE, GET, PATCH"),
                                  ("PUT", "/admin/keys", "GET, POST"), ("DELETE", "/admin/teams/web", "GET, PATCH"),
                                  ("GET", f"/admin/keys/{key_id}/credits", "POST")):
        status, headers, raw = http(method, gw.url + path, {}, ADMIN)
        assert status == 405 and headers["allow"] == allowed, (method, path, raw)
        assert json.loads(raw)["error"]["message"].endswith(f"use {allowed}.")
    cli = subprocess.run([sys.executable, "-m", "switchboard", "credits", "add", "team:", "5", "--url", gw.url,
                          "--admin-key", MASTER], capture_output=True, text=True, timeout=30)
    assert cli.returncode != 0 and "405" not in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    assert "team:NAME" in cli.stderr


def test_admin_paths_in_openapi(stack):
    gw, _ = stack
    doc = json.loads(http("GET", gw.url + "/openapi.json")[2])
    assert {"/admin/keys", "/admin/keys/{key_id}", "/admin/usage", "/admin/ledger"} <= set(doc["paths"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_nul_in_admin_input_is_a_400_naming_the_parameter_on_every_backend(backend, request):
    gw = request.getfixturevalue("stack")[0] if backend == "sqlite" else request.getfixturevalue("pg_gateway")
    key_id, _ = new_key(gw, name="nul-target")
    cases = [("POST", "/admin/keys", {"name": "a\x00b"}, "name"),
             ("POST", "/admin/keys", {"name": "ok", "team": "a\x00b"}, "team"),
             ("PATCH", f"/admin/keys/{key_id}", {"name": "x\x00"}, "name"),
             ("POST", f"/admin/keys/{key_id}/credits", {"amount_usd": 1, "note": "a\x00b"}, "note"),
             ("GET", "/admin/keys/%00", None, "key_id"), ("DELETE", "/admin/keys/%00", None, "key_id"),
             ("GET", "/admin/teams/%00", None, "team"),
             ("POST", "/admin/teams/a%00/credits", {"amount_usd": 1}, "team"),
             ("GET", "/admin/ledger?account=%00", None, "account"),
             ("GET", "/admin/ledger?request_id=a%00", None, "request_id"),
             ("GET", "/admin/usage?model=%00", None, "model"), ("GET", "/admin/usage?team=%00", None, "team"),
             ("GET", "/admin/usage?key=%00", None, "key"), ("GET", "/admin/keys?team=%00", None, "team"),
             ("GET", "/admin/dashboard/requests?model=%00", None, "model")]
    for method, path, body, param in cases:
        status, data = admin(gw, method, path, body)
        assert status == 400, (method, path, status, data)
        assert data["error"]["type"] == "invalid_request_error" and data["error"]["param"] == param, (path, data)
    _, view = admin(gw, "GET", f"/admin/keys/{key_id}")
    assert view["name"] == "nul-target" and view["credit"]["balance_usd"] == 0
    # a note may still span lines
    status, _ = admin(gw, "POST", f"/admin/keys/{key_id}/credits", {"amount_usd": 1, "note": "line one\nline two"})
    assert status == 201


def test_a_nul_in_a_requested_model_does_not_stop_the_postgres_request_log(pg_gateway):
    gw = pg_gateway
    _, key = new_key(gw, name="nul-model")
    client = client_for(gw, key)
    ask(client)
    with pytest.raises(openai.NotFoundError):
        ask(client, model="bad\x00model")
    for _ in range(3):
        ask(client)

    def logged():
        status, report = admin(gw, "GET", "/admin/usage?group_by=model")
        return status == 200 and {r["model"]: r["requests"] for r in report["data"]}

    models = wait_for(lambda: (m := logged()) and sum(m.values()) == 5 and m, timeout=5)
    assert models == {"m": 4, "bad\ufffdmodel": 1}


def test_logs_on_the_command_line_reads_the_postgres_a_config_names(pg_gateway):
    gw = pg_gateway
    _, key = new_key(gw, name="logged")
    raw = client_for(gw, key).chat.completions.with_raw_response.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    request_id = raw.headers["x-request-id"]
    # A stale SQLite file where the config's sqlite_path points was read instead, as if it were the log.
    with sqlite3.connect(gw.db) as stale:
        stale.execute("CREATE TABLE request_log (ts REAL, request_id TEXT, status INTEGER)")
    logs = lambda *a: subprocess.run([sys.executable, "-m", "switchboard", "logs", "--config", str(gw.config_path),
                                      *a], capture_output=True, text=True, env={**os.environ, **gw.env}, timeout=30)
    rows = wait_for(lambda: [json.loads(line) for line in logs("--json", "-n", "50").stdout.splitlines()
                             if request_id in line], timeout=5)
    assert rows and rows[0]["status"] == 200 and rows[0]["cost"] == pytest.approx(0.21)
    out = logs("--model", "m", "--status", "200")
    assert out.returncode == 0 and request_id in out.stdout, out.stderr
    out = subprocess.run([sys.executable, "-m", "switchboard", "logs", "--config", str(gw.config_path)],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, **gw.env, "SB_DB": "postgresql://nobody@127.0.0.1:9/none"})
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_feedback_text_with_a_nul_is_kept_and_a_bad_request_id_or_two_scores_are_a_400(backend, request):
    gw = request.getfixturevalue("stack")[0] if backend == "sqlite" else request.getfixturevalue("pg_gateway")
    _, key = new_key(gw, name="feedback-nul")
    raw = client_for(gw, key).chat.completions.with_raw_response.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    request_id = raw.headers["x-request-id"]
    auth = {"authorization": f"Bearer {key}"}
    status, _, body = http("POST", gw.url + "/v1/feedback",
                           {"request_id": request_id, "score": 1, "comment": "a\x00b", "prompt": "p\x00"}, auth)
    assert status == 200 and json.loads(body)["score"] == 1.0, body
    for sent, param in (({"request_id": "r\x00", "score": 1}, "request_id"),
                        ({"request_id": request_id, "score": 1, "rating": "bad"}, "score")):
        status, _, body = http("POST", gw.url + "/v1/feedback", sent, auth)
        assert status == 400 and json.loads(body)["error"]["param"] == param, body
