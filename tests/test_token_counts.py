"""Input tokens counted before a request is sent, images and documents included.

Anthropic's `messages.count_tokens` and OpenAI's `responses.input_tokens.count` through their SDKs, on
models served by different providers (each counts an image by its own rule), and tpm limits that count an
image's tokens at admission. The image-size and PDF-page readers are checked on files Pillow writes.
"""

from __future__ import annotations

import base64
import io
import json
import zlib

import anthropic
import openai
import pytest
from PIL import Image
from provider_helpers import every_provider_stack
from support import http

from switchboard.accounting.media_tokens import (CLAUDE, GEMINI, OPENAI, image_size, image_tokens, page_tokens,
                                                 pdf_pages, scheme_of)
from switchboard.testing.pdf import build_pdf

MASTER = "sk-test-master-token-counts"
ADMIN = {"authorization": f"Bearer {MASTER}"}
QUESTION = "Hello there, how are you?"  # 7 tokens in o200k_base


def picture(width: int, height: int, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, fmt, **options)
    return out.getvalue()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


SQUARE = picture(1092, 1092)  # Anthropic's example: 1,590 tokens
PDF = build_pdf(["page one", "page two", "page three"])


stack = every_provider_stack("token-counts", MASTER)


# ---------------------------------------------------------------- readers and rules


@pytest.mark.parametrize("fmt,options", [
    ("PNG", {}), ("GIF", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
    ("JPEG", {"icc_profile": b"\0" * 200_000}),  # the size comes after 200 kB of metadata
    ("WEBP", {}), ("WEBP", {"lossless": True})])
def test_image_size_is_read_from_the_header(fmt, options):
    assert image_size(picture(1234, 567, fmt, **options)) == (1234, 567)


def test_image_size_of_webp_with_alpha_and_of_garbage():
    out = io.BytesIO()
    Image.new("RGBA", (777, 333), (1, 2, 3, 100)).save(out, "WEBP")  # an extended (VP8X) file
    assert image_size(out.getvalue()) == (777, 333)
    assert image_size(b"\xff\xd8\xff\xe0\x00") is None and image_size(b"not an image") is None


def test_pdf_pages_counts_page_objects_also_inside_object_streams():
    assert pdf_pages(PDF) == 3
    packed = zlib.compress(b"1 0 2 40 << /Type /Page /Parent 5 0 R >> << /Type /Page /Parent 5 0 R >> "
                           b"<< /Type /Pages /Kids [1 0 R 2 0 R] /Count 2 >>")
    compressed = (b"%PDF-1.5\n7 0 obj\n<< /Type /ObjStm /N 3 /First 8 /Filter /FlateDecode /Length "
                  + str(len(packed)).encode() + b" >>\nstream\n" + packed + b"\nendstream\nendobj\n")
    assert pdf_pages(compressed) == 2
    assert pdf_pages(b"%PDF-1.7 nothing readable") == 1


def test_rules_give_the_providers_documented_examples():
    assert image_tokens(OPENAI, (1024, 1024)) == 765 and image_tokens(OPENAI, (2048, 4096)) == 1105
    assert image_tokens(OPENAI, (4096, 8192), "low") == 85
    assert image_tokens(CLAUDE, (1092, 1092)) == 1590 and image_tokens(CLAUDE, (200, 200)) == 54
    assert image_tokens(CLAUDE, (3000, 2000)) == 1600  # fitted into 1,568 pixels, at most 1,600 tokens
    assert image_tokens(GEMINI, (384, 384)) == 258 and image_tokens(GEMINI, (1000, 700)) == 2 * 258
    assert image_tokens(CLAUDE, None) == image_tokens(CLAUDE, (1024, 1024))  # a URL: a 1024-pixel square
    assert page_tokens(GEMINI) == 258 and page_tokens(OPENAI) == 765 + 500


def test_openai_rules_follow_the_upstream_model():
    assert scheme_of("openai", "gpt-4o-2024-08-06") == scheme_of("azure", "my-deployment") == OPENAI
    assert scheme_of("gemini", "gpt-4o-mini") == GEMINI and scheme_of("bedrock", "gpt-4o-mini") == CLAUDE
    mini = scheme_of("openai", "gpt-4o-mini-2024-07-18")  # the same price per image as GPT-4o, in more tokens
    assert image_tokens(mini, (1024, 1024)) == 2833 + 4 * 5667 and image_tokens(mini, (1024, 1024), "low") == 2833
    assert image_tokens(scheme_of("openai", "o3"), (1024, 1024)) == 75 + 4 * 150
    assert image_tokens(scheme_of("openai", "gpt-5"), (1024, 1024)) == 70 + 4 * 140
    patches = scheme_of("openai", "openai/gpt-4.1-mini")  # 32-pixel patches, at most 1,536, times 1.62
    assert image_tokens(patches, (1024, 1024)) == round(1024 * 1.62)
    assert image_tokens(patches, (1800, 2400)) == round(1452 * 1.62)  # scaled down to 33 x 44 patches
    assert image_tokens(patches, (1024, 1024), "low") == image_tokens(patches, (1024, 1024))  # no low detail
    assert image_tokens(scheme_of("openai", "gpt-4.1-nano"), (1024, 1024)) == round(1024 * 2.46)
    assert image_tokens(scheme_of("openai", "o4-mini"), (64, 64)) == round(4 * 1.72)


# ---------------------------------------------------------------- Anthropic count_tokens


def count(client: anthropic.Anthropic, model: str, *blocks: dict) -> int:
    content = [*blocks, {"type": "text", "text": QUESTION}]
    return client.messages.count_tokens(model=model, messages=[{"role": "user", "content": content}]).input_tokens


def test_anthropic_count_tokens_counts_images_and_pdfs_by_the_serving_providers_rule(stack):
    gw, mock = stack
    client = anthropic.Anthropic(api_key=MASTER, base_url=gw.url, max_retries=0, timeout=15)
    requests_before = mock.stats()["requests"]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(SQUARE).decode()}}
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                               "data": base64.b64encode(PDF).decode()}}
    gpt = scheme_of("openai", "gpt-4o-mini")  # the upstream model of "gpt"
    for model, scheme in (("claude", CLAUDE), ("bedrock", CLAUDE), ("gpt", gpt), ("gemini", GEMINI)):
        text = count(client, model)
        assert text == 7 + 3 + 3  # the question, its message's framing, the reply's start
        assert count(client, model, image) - text == image_tokens(scheme, (1092, 1092))
        assert count(client, model, image, image) - text == 2 * image_tokens(scheme, (1092, 1092))
        assert count(client, model, document) - text == 3 * page_tokens(scheme)
    assert count(client, "claude", image) - text == 1590
    assert mock.stats()["requests"] == requests_before  # counting sends nothing upstream


def test_a_prompt_of_over_a_million_characters_is_counted(stack):
    gw, _ = stack
    long_text = "ab " * 400_000  # 1.2 million characters, 400,001 tokens: more than the BPE takes at once
    anthropic_client = anthropic.Anthropic(api_key=MASTER, base_url=gw.url, max_retries=0, timeout=60)
    counted = anthropic_client.messages.count_tokens(model="claude", messages=[{"role": "user", "content": long_text}])
    assert counted.input_tokens == 400_001 + 3 + 3
    openai_client = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=60)
    assert openai_client.responses.input_tokens.count(model="gemini", input=long_text).input_tokens == 400_001 + 3 + 3


# ---------------------------------------------------------------- OpenAI responses.input_tokens


def test_responses_input_tokens_counts_text_images_files_and_a_stored_conversation(stack):
    gw, _ = stack
    client = openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=15)
    counted = client.responses.input_tokens.count(model="gpt", instructions="Be brief.", input=QUESTION)
    assert counted.object == "response.input_tokens"
    assert counted.input_tokens == (3 + 3) + (7 + 3) + 3  # "Be brief." is 3 tokens; 3 frame each message
    image = {"type": "input_image", "image_url": data_url(picture(1024, 1024), "image/png")}
    low = {**image, "detail": "low"}
    file = {"type": "input_file", "filename": "three.pdf", "file_data": data_url(PDF, "application/pdf")}

    def with_parts(model: str, *parts: dict) -> int:
        return client.responses.input_tokens.count(model=model, input=[{"role": "user", "content": [
            *parts, {"type": "input_text", "text": QUESTION}]}]).input_tokens

    text = with_parts("gpt")
    assert with_parts("gpt", image) - text == 2833 + 4 * 5667 and with_parts("gpt", low) - text == 2833  # 4o-mini
    assert with_parts("gpt", file) - text == 3 * page_tokens(scheme_of("openai", "gpt-4o-mini"))
    assert with_parts("claude", image) - text == image_tokens(CLAUDE, (1024, 1024))

    first = client.responses.create(model="gpt", input=QUESTION)
    follow_up = client.responses.input_tokens.count(model="gpt", previous_response_id=first.id, input="And now?")
    whole = client.responses.input_tokens.count(model="gpt", input=[
        {"role": "user", "content": QUESTION}, {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And now?"}])
    assert follow_up.input_tokens == whole.input_tokens > counted.input_tokens
    only_history = client.responses.input_tokens.count(model="gpt", previous_response_id=first.id)
    assert only_history.input_tokens == follow_up.input_tokens - client.responses.input_tokens.count(
        model="gpt", input="And now?").input_tokens + 3  # one reply start, not two


@pytest.mark.parametrize("body,status,param", [
    ({"model": "gpt", "input": "x", "stream": True}, 400, "stream"),
    ({"model": "gpt", "input": "x", "max_output_tokens": 50}, 400, "max_output_tokens"),
    ({"model": "gpt", "input": "x", "conversation": "conv_1"}, 400, "conversation"),
    ({"model": "gpt"}, 400, "input"),
    ({"input": "x"}, 400, "model"),
    ({"model": "nope", "input": "x"}, 404, None),
    ({"model": "gpt", "input": "x", "previous_response_id": "resp_unknown"}, 400, "previous_response_id"),
    ({"model": "gpt", "input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]}]},
     400, None),
    ("not an object", 400, None)])
def test_responses_input_tokens_refuses_what_it_cannot_count(stack, body, status, param):
    gw, _ = stack
    code, _, raw = http("POST", gw.url + "/v1/responses/input_tokens", body, ADMIN)
    error = json.loads(raw)["error"]
    assert code == status and error["message"]
    if param:
        assert error["param"] == param


def test_a_key_limited_to_some_models_is_told_of_those_alone(stack):
    gw, _ = stack
    code, _, raw = http("POST", gw.url + "/admin/keys", {"allowed_models": ["gpt"]}, ADMIN)
    assert code == 201
    key = json.loads(raw)["key"]
    anthropic_client = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0, timeout=15)
    with pytest.raises(anthropic.NotFoundError) as refused:
        anthropic_client.messages.count_tokens(model="claude", messages=[{"role": "user", "content": QUESTION}])
    assert refused.value.body["error"]["message"].endswith("Available models: gpt."), refused.value.body
    openai_client = openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=15)
    with pytest.raises(openai.NotFoundError) as refused_too:
        openai_client.responses.input_tokens.count(model="claude", input=QUESTION)
    assert refused_too.value.message.endswith("Available models: gpt."), refused_too.value.message
    assert [m.id for m in openai_client.models.list()] == ["gpt"]


def test_responses_input_tokens_needs_a_key(stack):
    gw, _ = stack
    code, _, raw = http("POST", gw.url + "/v1/responses/input_tokens", {"model": "gpt", "input": "x"})
    assert code == 401 and b"error" in raw


# ---------------------------------------------------------------- tpm limits


def test_tpm_limits_count_an_images_tokens_at_admission(stack):
    gw, mock = stack
    code, _, raw = http("POST", gw.url + "/admin/keys", {"tpm": 1500}, ADMIN)
    assert code == 201
    client = openai.OpenAI(api_key=json.loads(raw)["key"], base_url=gw.url + "/v1", max_retries=0)

    def ask(model: str, detail: str) -> None:
        client.chat.completions.create(model=model, max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(SQUARE, "image/png"), "detail": detail}},
            {"type": "text", "text": "What colour is this?"}]}])

    before = mock.stats()["requests"]
    with pytest.raises(openai.RateLimitError) as refused:  # 1,590 image tokens for Claude: over 1,500 alone
        ask("claude", "auto")
    assert "tokens per minute" in refused.value.message
    requested = int(refused.value.message.split("Requested ")[1].split(".")[0])
    assert 1590 < requested < 1590 + 20  # the image, the text and the 5 output tokens
    assert mock.stats()["requests"] == before  # refused before anything went upstream
    with pytest.raises(openai.RateLimitError):
        ask("gpt", "low")  # gpt-4o-mini bills 2,833 tokens for an image even at low detail
    ask("gemini", "auto")  # 4 tiles of 258 for Gemini
    assert mock.stats()["requests"] == before + 1
    long_pdf = build_pdf([f"page {i}" for i in range(1500)])  # 0.5 MB of base64: its pages are counted off the loop
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "file", "file": {"file_data": data_url(long_pdf, "application/pdf"), "filename": "long.pdf"}},
            {"type": "text", "text": "Summarise."}]}])
    assert f"Requested {1500 * page_tokens(CLAUDE) + 3 + 5}." in refused.value.message
    assert mock.stats()["requests"] == before + 1
