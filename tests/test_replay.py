"""The replay provider and record mode: real recorded answers served through a running gateway."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import openai
import pytest

from support import DATA, GatewayProc, MockProc, http, wait_for

CSV = DATA / "gsm8k" / "responses.csv"
GPT4, MIXTRAL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


@pytest.fixture(scope="module")
def rows():
    with open(CSV, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))[:5]


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    own = tmp / "own.jsonl"
    own.write_text(
        json.dumps({"prompt": "What is the capital of France?", "response": "Paris."}) + "\n"
        + json.dumps({"messages": [{"role": "system", "content": "Be terse."},
                                   {"role": "user", "content": "Name a colour"}], "response": "Blue."}) + "\n"
        + json.dumps({"model": "other-model", "prompt": "What is the capital of France?", "response": "Lyon."}) + "\n")
    config = {"models": {
        "gpt-4": {"deployments": [{"provider": "replay", "model": GPT4, "recordings": str(CSV)}]},
        "mixtral": {"deployments": [{"provider": "replay", "model": MIXTRAL, "recordings": str(CSV), "chunk_words": 3}]},
        "mine": {"deployments": [{"provider": "replay", "model": "my-model", "recordings": [str(own)]}]},
        "nobody": {"deployments": [{"provider": "replay", "model": "not-recorded", "recordings": str(CSV)}]},
    }}
    gw = GatewayProc(tmp, config)
    yield gw
    gw.stop()


@pytest.fixture
def client(replay):
    return openai.OpenAI(api_key="unused", base_url=replay.url + "/v1", max_retries=0, timeout=10)


def test_serves_the_recorded_answer_and_prices_it_like_the_real_model(client, rows):
    row = rows[1]
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4", messages=[{"role": "user", "content": row["prompt"]}])
    completion = raw.parse()
    assert completion.choices[0].message.content == row[GPT4 + "_response"]
    assert completion.model == GPT4
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    # catalog price of gpt-4-1106-preview: $10 in / $30 out per million tokens
    expected = (usage.prompt_tokens * 10 + usage.completion_tokens * 30) / 1e6
    assert float(raw.headers["x-switchboard-cost"]) == pytest.approx(expected, rel=1e-6)


def test_prompt_matching_ignores_case_and_spacing_and_uses_the_last_user_message(client, rows):
    row = rows[0]
    messy = "  " + row["prompt"].upper().replace(" ", "   \n ") + "\n"
    completion = client.chat.completions.create(model="mixtral", messages=[
        {"role": "system", "content": "You are a maths tutor."},
        {"role": "user", "content": "an earlier turn"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": messy}]}])
    assert completion.choices[0].message.content == row[MIXTRAL + "_response"]


def test_streams_in_word_chunks_with_usage(client, rows):
    row = rows[2]
    stream = client.chat.completions.create(model="mixtral", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": row["prompt"]}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == row[MIXTRAL + "_response"]
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= len(text.split()) // 3 - 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_unknown_prompt_is_a_clear_400(client, replay):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "never recorded"}])
    err = info.value.body
    assert err["code"] == "no_recorded_response"
    assert "never recorded" in err["message"] and err["param"] == "messages"
    status, _, body = http("POST", replay.url + "/v1/chat/completions", {
        "model": "gpt-4", "stream": True, "messages": [{"role": "user", "content": "never recorded"}]})
    assert status == 400 and json.loads(body)["error"]["code"] == "no_recorded_response"


def test_a_model_missing_from_the_recordings_is_named(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert "not-recorded" in info.value.body["message"] and GPT4 in info.value.body["message"]


def test_jsonl_recordings_with_prompt_or_messages_and_model_filter(client):
    def ask(text: str) -> str:
        return client.chat.completions.create(model="mine", messages=[{"role": "user", "content": text}]
                                              ).choices[0].message.content

    assert ask("what is the capital of france?") == "Paris."  # the `other-model` line is not served here
    assert ask("Name a colour") == "Blue."


def test_record_mode_writes_what_replay_then_serves(tmp_path):
    mock = MockProc(tmp_path, {"live-up": {"reply": "A live answer, recorded."}})
    path = tmp_path / "recorded.jsonl"
    live = {"deployments": [{"provider": "openai", "model": "live-up", "base_url": mock.url + "/v1"}]}
    gw = GatewayProc(tmp_path, {"models": {"live": live, "unrecorded": live},
                                "record": {"path": str(path), "models": ["live"]}}, name="recorder")
    try:
        c = openai.OpenAI(api_key="x", base_url=gw.url + "/v1", max_retries=0, timeout=10)
        c.chat.completions.create(model="live", messages=[{"role": "user", "content": "first question"}])
        "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="live", stream=True, messages=[{"role": "user", "content": "second question"}]) if ch.choices)
        c.chat.completions.create(model="unrecorded", messages=[{"role": "user", "content": "not me"}])
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="missing", messages=[{"role": "user", "content": "fails"}])
        assert wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= 2)
    finally:
        gw.stop()
        mock.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2, lines
    assert {rec["messages"][-1]["content"] for rec in lines} == {"first question", "second question"}
    assert all(rec["response"] == "A live answer, recorded." and rec["model"] == "live" for rec in lines)
    assert all(rec["usage"]["completion_tokens"] > 0 for rec in lines)

    player = GatewayProc(tmp_path, {"models": {"live": {"deployments": [
        {"provider": "replay", "model": "live-up", "recordings": str(path)}]}}}, name="player")
    try:
        c = openai.OpenAI(api_key="x", base_url=player.url + "/v1", max_retries=0, timeout=10)
        again = c.chat.completions.create(model="live", messages=[{"role": "user", "content": "Second  Question"}])
        assert again.choices[0].message.content == "A live answer, recorded."
    finally:
        player.stop()


def test_bad_record_config_names_key_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m:\n    deployments:\n      - {provider: replay, recordings: x.jsonl}\n"
                   "record:\n  path: out.jsonl\n  bogus: 1\n")
    proc = subprocess.run([sys.executable, "-m", "switchboard", "serve", "--config", str(bad), "--port", "0"],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 2
    assert "record.bogus" in proc.stderr and ":7:" in proc.stderr, proc.stderr
