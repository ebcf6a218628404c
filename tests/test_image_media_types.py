"""An image's media type is what reaches every provider correctly: the alias image/jpg is image/jpeg, and a
data URL whose declared type its bytes contradict (OpenAI accepts it; Claude refuses "Image does not match the
provided media type") goes out as the type its bytes are. Real gateway, mock upstreams (mock Claude, like
Claude, checks the bytes against the media type)."""

from __future__ import annotations

import base64
import json
import re

import pytest

from provider_helpers import PNG_B64, every_provider_stack
from support import http

MASTER = "sk-test-master-image-types-0123"
JPEG_B64 = base64.b64encode(bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")).decode()
SENT_TYPE = re.compile(r'"(?:mimeType|media_type|format)": "([^"]*)"')
# each provider's name for the type the bytes are
NAMES = {"image/jpeg": {"claude": "image/jpeg", "gemini": "image/jpeg", "bedrock": "jpeg"},
         "image/png": {"claude": "image/png", "gemini": "image/png", "bedrock": "png"}}

stack = every_provider_stack("image-types", MASTER)


@pytest.mark.parametrize("model", ["claude", "gemini", "bedrock"])
@pytest.mark.parametrize("url, really", [
    ("data:image/jpg;base64," + JPEG_B64, "image/jpeg"),
    ("data:image/jpeg;base64," + PNG_B64, "image/png"),
    ("data:image/png;base64," + JPEG_B64, "image/jpeg"),
], ids=["jpg-alias", "png-labelled-jpeg", "jpeg-labelled-png"])
def test_an_image_goes_out_as_the_type_it_is(stack, model, url, really):
    gw, mock = stack
    status, _, raw = http("POST", gw.url + "/v1/chat/completions", {"model": model, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": url}}]}]},
                          {"authorization": f"Bearer {MASTER}"})
    assert status == 200, raw
    assert SENT_TYPE.findall(json.dumps(mock.stats()["last_request"])) == [NAMES[really][model]]


def test_mock_claude_refuses_an_image_whose_bytes_are_not_its_media_type(stack):
    _, mock = stack
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG_B64}}
    status, _, raw = http("POST", mock.url + "/v1/messages", {
        "model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": [block]}]},
        {"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert status == 400 and "does not match the provided media type" in raw.decode()
