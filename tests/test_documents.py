"""Documents (PDFs, text files) end to end: each ingress's file shape -> the gateway -> each provider's document
shape at the mock, which reads the PDF and bills its pages."""

from __future__ import annotations

import base64
import json

import anthropic
import openai
import pytest

from provider_helpers import every_provider_stack
from support import http
from switchboard.testing.pdf import PAGE_TOKENS, build_pdf, read_pdf

MASTER = "sk-test-master-documents-0123"
PDF = build_pdf(["Quarterly revenue rose 12 percent.", "Costs fell in every region."])
PDF_B64 = base64.b64encode(PDF).decode()
PDF_URL = "data:application/pdf;base64," + PDF_B64
PDF_TEXT = read_pdf(PDF)[1]


stack = every_provider_stack("documents", MASTER)


def oa(gw) -> openai.OpenAI:
    return openai.OpenAI(api_key=MASTER, base_url=gw.url + "/v1", max_retries=0, timeout=15)


def pdf_part(filename: str | None = "report.pdf") -> dict:
    return {"type": "file", "file": {"file_data": PDF_URL, **({"filename": filename} if filename else {})}}


def ask(text: str, *parts: dict) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, *parts]}]


def test_a_pdf_reaches_every_provider_in_its_own_shape_and_its_pages_are_billed(stack):
    gw, mock = stack
    client = oa(gw)
    plain = {name: client.chat.completions.create(model=name, max_tokens=50, messages=ask("Summarise.")).usage
             for name in ("gpt", "claude", "gemini", "bedrock")}
    for name in plain:
        answer = client.chat.completions.create(model=name, max_tokens=50, messages=ask("Summarise.", pdf_part()))
        sent = mock.stats()["last_request"]
        if name == "gpt":
            assert sent["messages"][0]["content"][1] == pdf_part()
        elif name == "claude":
            assert sent["messages"][0]["content"][1] == {
                "type": "document", "title": "report.pdf",
                "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}}
        elif name == "gemini":
            assert sent["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "application/pdf", "data": PDF_B64}}
        else:
            assert sent["messages"][0]["content"][1] == {
                "document": {"format": "pdf", "name": "report", "source": {"bytes": PDF_B64}}}
        # the model read both pages: their text and what each page costs besides it
        grown = answer.usage.prompt_tokens - plain[name].prompt_tokens
        assert 2 * PAGE_TOKENS + len(PDF_TEXT) // 4 - 2 <= grown <= 2 * PAGE_TOKENS + len(PDF_TEXT) // 4 + 2, name
        assert answer.choices[0].message.content


def test_a_pdf_streams_through_every_provider(stack):
    gw, _ = stack
    for name in ("gpt", "claude", "gemini", "bedrock"):
        chunks = list(oa(gw).chat.completions.create(model=name, max_tokens=50, stream=True,
                                                     stream_options={"include_usage": True},
                                                     messages=ask("Summarise.", pdf_part())))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), name
        assert chunks[-1].usage.prompt_tokens > 2 * PAGE_TOKENS, name


def test_openai_gets_the_filename_it_requires(stack):
    gw, mock = stack
    oa(gw).chat.completions.create(model="gpt", max_tokens=20, messages=ask("Read it.", pdf_part(None)))
    assert mock.stats()["last_request"]["messages"][0]["content"][1]["file"] == {
        "file_data": PDF_URL, "filename": "document.pdf"}


def test_bedrock_names_are_cleaned_and_unique(stack):
    gw, mock = stack
    parts = [pdf_part("Q3 report (final).v2.pdf"), pdf_part("Q3 report (final).v2.pdf"), pdf_part("§§§.pdf")]
    oa(gw).chat.completions.create(model="bedrock", max_tokens=20, messages=ask("Compare them.", *parts))
    names = [b["document"]["name"] for b in mock.stats()["last_request"]["messages"][0]["content"][1:]]
    assert names == ["Q3 report (final) v2", "Q3 report (final) v2 (2)", "document"]


def test_a_text_file_reaches_each_provider(stack):
    gw, mock = stack
    notes = "Meeting notes: ship on Friday."
    part = {"type": "file", "file": {"file_data": "data:text/plain;base64," + base64.b64encode(notes.encode()).decode(),
                                     "filename": "notes.txt"}}
    oa(gw).chat.completions.create(model="claude", max_tokens=20, messages=ask("When?", part))
    assert mock.stats()["last_request"]["messages"][0]["content"][1]["source"] == {
        "type": "text", "media_type": "text/plain", "data": notes}
    oa(gw).chat.completions.create(model="bedrock", max_tokens=20, messages=ask("When?", part))
    assert mock.stats()["last_request"]["messages"][0]["content"][1]["document"]["format"] == "txt"
    oa(gw).chat.completions.create(model="gemini", max_tokens=20, messages=ask("When?", part))
    assert mock.stats()["last_request"]["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "text/plain"
    # OpenAI's chat API reads PDFs only (a text file is its 400), and Ollama reads no files: both get the text
    inline = f'<document name="notes.txt">\n{notes}\n</document>'
    oa(gw).chat.completions.create(model="gpt", max_tokens=20, messages=ask("When?", part))
    assert mock.stats()["last_request"]["messages"][0]["content"][1] == {"type": "text", "text": inline}
    oa(gw).chat.completions.create(model="ollama", max_tokens=20, messages=ask("When?", part))
    assert mock.stats()["last_request"]["messages"][0]["content"] == "When?\n\n" + inline  # a paragraph of its own


def test_the_anthropic_sdk_sends_documents_to_any_model(stack):
    gw, mock = stack
    client = anthropic.Anthropic(api_key=MASTER, base_url=gw.url, max_retries=0, timeout=15)
    document = {"type": "document", "title": "Q3", "cache_control": {"type": "ephemeral"},
                "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}}
    content = [document, {"type": "text", "text": "Summarise it."}]
    # to Claude: the same block comes out, breakpoint included
    message = client.messages.create(model="claude", max_tokens=50, messages=[{"role": "user", "content": content}])
    assert mock.stats()["last_request"]["messages"][0]["content"][0] == document
    assert message.usage.cache_creation_input_tokens > 0
    # to OpenAI: a file part, named from the title; to Gemini: inline data
    client.messages.create(model="gpt", max_tokens=50, messages=[{"role": "user", "content": content}])
    assert mock.stats()["last_request"]["messages"][0]["content"][0]["file"] == {"file_data": PDF_URL, "filename": "Q3"}
    message = client.messages.create(model="gemini", max_tokens=50, messages=[{"role": "user", "content": content}])
    assert message.usage.input_tokens > 2 * PAGE_TOKENS
    # a text document is its text, led by its title and context, for every provider
    text_doc = {"type": "document", "title": "Notes", "context": "From the standup",
                "source": {"type": "text", "media_type": "text/plain", "data": "Ship on Friday."}}
    client.messages.create(model="gpt", max_tokens=50,
                           messages=[{"role": "user", "content": [text_doc, {"type": "text", "text": "When?"}]}])
    assert mock.stats()["last_request"]["messages"][0]["content"][0] == {
        "type": "text", "text": "Notes\n\nFrom the standup\n\nShip on Friday."}
    # a tool's result may be a document: it follows the tool message in the user turn, as images do
    history = [{"role": "user", "content": "Fetch the report."},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "fetch", "input": {}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                   {"type": "text", "text": "here it is"}, document]}]}]
    tools = [{"name": "fetch", "input_schema": {"type": "object"}}]
    message = client.messages.create(model="gpt", max_tokens=50, tools=tools, messages=history)
    sent = mock.stats()["last_request"]["messages"]
    assert sent[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "here it is"}
    assert sent[3]["content"][0]["file"]["file_data"] == PDF_URL and message.usage.input_tokens > 2 * PAGE_TOKENS
    # Bedrock wants text beside a turn's documents: a tool's documents go into its toolResult instead
    message = client.messages.create(model="bedrock", max_tokens=50, tools=tools, messages=history)
    turn = mock.stats()["last_request"]["messages"][2]["content"]
    assert [next(iter(b)) for b in turn] == ["toolResult"]
    assert [next(iter(item)) for item in turn[0]["toolResult"]["content"]] == ["text", "document"]
    assert turn[0]["toolResult"]["content"][1]["document"]["source"]["bytes"] == PDF_B64
    assert message.usage.input_tokens > 2 * PAGE_TOKENS


def test_the_responses_api_takes_input_file(stack):
    gw, mock = stack
    response = oa(gw).responses.create(model="claude", input=[{"role": "user", "content": [
        {"type": "input_file", "filename": "report.pdf", "file_data": PDF_URL},
        {"type": "input_text", "text": "Summarise."}]}])
    assert response.output_text
    assert mock.stats()["last_request"]["messages"][0]["content"][0]["source"]["data"] == PDF_B64


def test_bad_files_are_400s_naming_the_parameter(stack):
    gw, mock = stack
    before = mock.stats()["requests"]

    def chat_error(model: str, messages: list) -> tuple[int, dict]:
        status, _, raw = http("POST", gw.url + "/v1/chat/completions",
                              {"model": model, "max_tokens": 10, "messages": messages},
                              headers={"authorization": f"Bearer {MASTER}"})
        return status, json.loads(raw)["error"]

    not_pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64,aGVsbG8=", "filename": "x.pdf"}}
    cases = [
        ("claude", ask("x", {"type": "file", "file": {"file_id": "file-abc"}}), "messages[0].content[1].file.file_id"),
        ("gemini", ask("x", not_pdf), "messages[0].content[1].file.file_data"),
        ("claude", ask("x", {"type": "file", "file": {"file_data": "https://example.com/x.pdf", "filename": "x"}}),
         "messages[0].content[1].file.file_data"),
        ("bedrock", ask("x", {"type": "file", "file": {"file_data": "data:image/png;base64,iVBORw0KGgo="}}),
         "messages[0].content[1].file.file_data"),
        ("gpt", ask("x", {"type": "file", "file": {}}), "messages[0].content[1].file"),
        ("gpt", ask("x", {"type": "file", "file": {"file_data": 7}}), "messages[0].content[1].file.file_data"),
        ("ollama", ask("x", pdf_part()), "messages[0].content[1].file.file_data"),
        ("bedrock", [{"role": "user", "content": [pdf_part()]}], "messages"),
        # as on OpenAI, files (and images) belong to user messages: a provider would drop them from a system prompt
        ("claude", [{"role": "system", "content": [pdf_part()]}, *ask("x")], "messages[0].content[0].type"),
    ]
    for model, messages, param in cases:
        status, error = chat_error(model, messages)
        assert (status, error["type"], error["param"]) == (400, "invalid_request_error", param), (model, error)
    assert mock.stats()["requests"] == before  # none reached an upstream
    client = anthropic.Anthropic(api_key=MASTER, base_url=gw.url, max_retries=0, timeout=15)
    for source, where in (({"type": "url", "url": "https://example.com/a.pdf"}, "source.type"),
                          ({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}, "source.media_type")):
        with pytest.raises(anthropic.BadRequestError) as err:
            client.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": [
                {"type": "document", "source": source}, {"type": "text", "text": "x"}]}])
        assert f"messages.0.content.0.{where}" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": [
            {"type": "document", "citations": {"enabled": True},
             "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])
    assert "citations" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        oa(gw).responses.create(model="claude", input=[{"role": "user", "content": [
            {"type": "input_file", "file_url": "https://example.com/a.pdf"}]}])
    assert err.value.param == "input[0].content[0].file_url"
