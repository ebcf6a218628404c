"""The mock upstream's Google Gemini API: `models/{model}:generateContent`, `:streamGenerateContent`, `:batchEmbedContents`.

It checks requests about as strictly as Gemini does (its proto-based JSON
parser refuses unknown field names, including JSON Schema keywords outside
Gemini's `Schema` subset), requires an API key, and answers with Gemini's
shapes: candidates of parts, `usageMetadata` (with thoughts tokens, as
thinking models report), `promptFeedback.blockReason` for a blocked prompt,
`finishReason` SAFETY / MAX_TOKENS, and errors as
``{"error": {"code", "message", "status", "details"}}`` (an invalid key is a
400 with reason API_KEY_INVALID, a rate limit carries a RetryInfo delay).
Streams (`alt=sse`) are SSE events of whole responses, `\\r\\n`-delimited.
Models past 2.x behave as Gemini 3 does with thought signatures: each function
call they make carries a `thoughtSignature`, and a request whose current turn
holds a step whose first function call lacks a signature the mock issued (or
Google's `skip_thought_signature_validator`) is refused with Gemini's 400.
Inline data may be an image (258 tokens) or a document of a type Gemini reads;
a PDF is read with `testing.pdf`. Stop sequences (at most 5) end a reply where
the first of them would be complete.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from switchboard.http.server import AbortConnection, Request, Response, StreamResponse
from switchboard.testing.mock_native import Invalid, count_model, injected_fault
from switchboard.testing.pdf import file_prompt
from switchboard.testing.schema_example import NO_PARAMETERS, example_of

if TYPE_CHECKING:
    from switchboard.testing.mock_upstream import MockUpstream

THOUGHTS_TOKENS = 4
THOUGHT_SUMMARY = "**Weighing the question** I compare what is asked with what I know before answering."
_REQUEST_FIELDS = {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig", "safetySettings",
                   "cachedContent"}
_DOCUMENT_TYPES = {"application/pdf", "text/plain", "text/html", "text/csv", "text/markdown", "text/xml"}
_PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
              "codeExecutionResult"}
_PART_FIELDS = _PART_DATA | {"thought", "thoughtSignature", "videoMetadata"}
GEMINI_MAX_STOPS = 5  # GenerationConfig.stopSequences: "up to 5"
_CONFIG_FIELDS = {"temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount",
                  "responseMimeType", "responseSchema", "responseJsonSchema", "presencePenalty", "frequencyPenalty",
                  "seed", "responseLogprobs", "logprobs", "thinkingConfig"}
_SCHEMA_FIELDS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
                  "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
                  "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
_SCHEMA_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL",
                 "string", "number", "integer", "boolean", "array", "object", "null"}
_UNSIGNED_MODELS = re.compile(r"^gemini-[12]\.")  # models that neither issue nor require thought signatures
_SKIP_SIGNATURE = "skip_thought_signature_validator"
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def route(mock: MockUpstream, path: str):
    model, _, method = unquote(path.split("/models/", 1)[1]).partition(":")
    if method == "generateContent":
        return lambda request, body: generate(mock, request, body, model, stream=False)
    if method == "streamGenerateContent":
        return lambda request, body: generate(mock, request, body, model, stream=True)
    if method == "batchEmbedContents":
        return lambda request, body: embed(mock, request, body, model)
    return None


def error(status: int, message: str, details: list[dict[str, Any]] | None = None,
          headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    if details:
        body["details"] = details
    return Response(status, orjson.dumps({"error": body}), headers or {})


def fault_error(status: int, message: str, headers: dict[str, str]) -> Response:
    """An injected fault as Gemini would send it."""
    if status == 401:  # Gemini reports a bad key as a 400 INVALID_ARGUMENT with reason API_KEY_INVALID
        return error(400, "API key not valid. Please pass a valid API key.", [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com"}])
    details = []
    if status == 429 and headers.get("retry-after"):
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{headers['retry-after']}s"})
    if status == 503 and message == "injected fault":
        message = "The model is overloaded. Please try again later."
    return error(status, message, details)


# ---------------------------------------------------------------- validation


# Gemini's documented Schema.format values by type (its own table: not the adapter's, which it checks).
_FORMATS = {"STRING": ("enum", "date-time"), "INTEGER": ("int32", "int64"), "NUMBER": ("float", "double")}


def _check_schema(node: Any, where: str) -> None:
    if not isinstance(node, dict):
        raise Invalid(f"Invalid value at '{where}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Schema)")
    for key, value in node.items():
        if key not in _SCHEMA_FIELDS:
            raise Invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'{where}\': Cannot find field.')
        if key == "type" and value not in _SCHEMA_TYPES:
            raise Invalid(f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), \"{value}\"")
        if key == "format":
            _check_format(node, where)
        if key == "properties":
            for name, sub in value.items():
                _check_schema(sub, f"{where}.properties[{name}].value")
        elif key == "items":
            _check_schema(value, f"{where}.items")
        elif key == "anyOf":
            for i, sub in enumerate(value):
                _check_schema(sub, f"{where}.any_of[{i}]")


def _check_format(node: dict[str, Any], where: str) -> None:
    kind = node.get("type")
    if kind in _FORMATS and node["format"] not in _FORMATS[kind]:
        allowed = " and ".join(f"'{f}'" for f in _FORMATS[kind])
        raise Invalid(f"* GenerateContentRequest.{where}.format: only {allowed} are supported for {kind} type")


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict):
        raise Invalid(f"Invalid value at '{where}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Part)")
    for key in part:
        if key not in _PART_FIELDS:
            raise Invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'{where}\': Cannot find field.')
    data = [k for k in part if k in _PART_DATA]
    if len(data) != 1:
        raise Invalid(f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field")
    if "text" in part and not isinstance(part["text"], str):
        raise Invalid(f"Invalid value at '{where}.text' (TYPE_STRING)")
    if "inlineData" in part:
        blob = part["inlineData"]
        if not isinstance(blob, dict) or not blob.get("mimeType") or not isinstance(blob.get("data"), str):
            raise Invalid(f"* GenerateContentRequest.{where}.inline_data: mimeType and data are required")
        try:
            base64.b64decode(blob["data"], validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed") from None
        if not blob["mimeType"].startswith("image/") and blob["mimeType"] not in _DOCUMENT_TYPES:
            raise Invalid(f"Unsupported MIME type: {blob['mimeType']}")
    if "functionCall" in part:
        call = part["functionCall"]
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise Invalid(f"* GenerateContentRequest.{where}.function_call.name: name is required")
        if "args" in call and not isinstance(call["args"], dict):
            raise Invalid(f"Invalid value at '{where}.function_call.args' (type.googleapis.com/google.protobuf.Struct)")
    if "functionResponse" in part:
        resp = part["functionResponse"]
        if not isinstance(resp, dict) or not isinstance(resp.get("name"), str) or not isinstance(resp.get("response"), dict):
            raise Invalid(f"Invalid value at '{where}.function_response' (name and a response object are required)")


def _check_thinking(thinking: Any, model: str) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict) or set(thinking) - {"thinkingBudget", "thinkingLevel", "includeThoughts"}:
        raise Invalid("Invalid value at 'generation_config.thinking_config'")
    if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        raise Invalid("You cannot use both thinking_level and the legacy thinking_budget parameter in the same "
                      "request.")
    if "thinkingLevel" in thinking:
        if _UNSIGNED_MODELS.match(model):
            raise Invalid("Thinking level is not supported for this model.")
        if thinking["thinkingLevel"] not in ("minimal", "low", "medium", "high"):
            raise Invalid("Invalid value at 'generation_config.thinking_config.thinking_level'")
    budget = thinking.get("thinkingBudget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < -1):
        raise Invalid("Invalid value at 'generation_config.thinking_config.thinking_budget'")


def validate(body: dict[str, Any], model: str = "") -> None:
    for key in body:
        if key not in _REQUEST_FIELDS:
            raise Invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or set(content) - {"role", "parts"}:
            raise Invalid(f"Invalid value at 'contents[{i}]' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content)")
        if content.get("role") not in ("user", "model"):
            raise Invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            _check_part(part, f"contents[{i}].parts[{j}]")
    system = body.get("systemInstruction")
    if system is not None:
        if not isinstance(system, dict) or not isinstance(system.get("parts"), list) or set(system) - {"role", "parts"}:
            raise Invalid("Invalid value at 'system_instruction' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content)")
        for j, part in enumerate(system["parts"]):
            _check_part(part, f"system_instruction.parts[{j}]")
    config = body.get("generationConfig") or {}
    for key in config:
        if key not in _CONFIG_FIELDS:
            raise Invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'generation_config\': Cannot find field.')
    if len(config.get("stopSequences") or []) > GEMINI_MAX_STOPS:
        raise Invalid("* GenerateContentRequest.generation_config.stop_sequences: at most "
                      f"{GEMINI_MAX_STOPS} stop sequences")
    _check_thinking(config.get("thinkingConfig"), model)
    if "logprobs" in config and not config.get("responseLogprobs"):
        raise Invalid("* GenerateContentRequest.generation_config.logprobs: logprobs is only allowed when "
                      "response_logprobs is true")
    if "responseSchema" in config:
        if config.get("responseMimeType") != "application/json":
            raise Invalid("* GenerateContentRequest.generation_config.response_mime_type: must be application/json "
                          "when response_schema is set")
        _check_schema(config["responseSchema"], "generation_config.response_schema")
    for i, tool in enumerate(body.get("tools") or []):
        for key in tool:
            if key not in ("functionDeclarations", "googleSearch", "codeExecution", "urlContext"):
                raise Invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'tools[{i}]\': Cannot find field.')
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            if set(decl) - {"name", "description", "parameters", "parametersJsonSchema", "response"} or not decl.get("name"):
                raise Invalid(f"Invalid value at 'tools[{i}].function_declarations[{j}]'")
            if "parameters" in decl:
                _check_schema(decl["parameters"], f"tools[{i}].function_declarations[{j}].parameters")
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig")
    if calling is not None:
        if calling.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED", None):
            raise Invalid(f"Invalid value at 'tool_config.function_calling_config.mode', \"{calling.get('mode')}\"")
        if calling.get("allowedFunctionNames") and calling.get("mode") not in ("ANY", "VALIDATED"):
            raise Invalid("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                          "only allowed when mode is ANY")


def signature_for(name: str) -> str:
    """The thought signature the mock puts on its calls of function `name` (opaque base64, as Gemini's)."""
    return base64.b64encode(hashlib.sha256(f"mock-thought:{name}".encode()).digest()).decode()


def _check_signatures(body: dict[str, Any]) -> None:
    """Gemini 3's rule: in the current turn (since the last user text), the first function call of each
    model step must carry its signature."""
    contents = body["contents"]
    start = max((i for i, c in enumerate(contents) if c["role"] == "user" and any("text" in p for p in c["parts"])),
                default=0)
    for i in range(start, len(contents)):
        if contents[i]["role"] != "model":
            continue
        for j, part in enumerate(contents[i]["parts"]):
            if "functionCall" in part:
                signature = part.get("thoughtSignature")
                if signature not in (_SKIP_SIGNATURE, signature_for(part["functionCall"]["name"])):
                    name = part["functionCall"]["name"]
                    raise Invalid("Function call is missing a thought_signature in functionCall parts. This is "
                                  "required for tools to work correctly, and missing thought_signature may lead to "
                                  f"degraded model performance. Additional data, function call `default_api:{name}` "
                                  f", position {j + 1}. Please refer to "
                                  "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
                                  if signature is None else "Corrupted thought signature.")
                break


def _call_part(call: dict[str, Any], model: str) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": call}
    if not _UNSIGNED_MODELS.match(model):
        part["thoughtSignature"] = signature_for(call["name"])
    return part


# ---------------------------------------------------------------- answers


def _prompt_text(body: dict[str, Any]) -> str:
    texts = [p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts") or ()]
    for content in body["contents"]:
        texts.extend(p["text"] for p in content["parts"] if "text" in p)
    return "\n".join(texts)


def _pick_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function the mock calls: the allowed one or the first declared, unless calling is off or answered."""
    declarations = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if not declarations or calling.get("mode") == "NONE":
        return None
    if any("functionResponse" in p for p in body["contents"][-1]["parts"]):
        return None
    allowed = calling.get("allowedFunctionNames") or [declarations[0]["name"]]
    spec = next((d for d in declarations if d.get("name") == allowed[0]), {})
    schema = spec.get("parametersJsonSchema") or spec.get("parameters") or NO_PARAMETERS
    return {"name": allowed[0], "args": example_of(schema, "mock")}


async def generate(mock: MockUpstream, request: Request, body: dict[str, Any], model: str,
                   stream: bool) -> Response | StreamResponse:
    count_model(mock, model)
    if not (request.headers.get("x-goog-api-key") or "key=" in request.query):
        return error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                          "Please use API Key or other form of API consumer identity to call this API.")
    fault = await injected_fault(mock, model)
    if fault is not None:
        return fault_error(*fault)
    try:
        validate(body, model)
        if not _UNSIGNED_MODELS.match(model):
            _check_signatures(body)
    except Invalid as exc:
        return error(exc.status, exc.message)
    behaviour = mock.behaviour(model)
    prompt, media_tokens = _prompt_text(body), 0
    for blob in (p["inlineData"] for c in body["contents"] for p in c["parts"] if "inlineData" in p):
        if blob["mimeType"].startswith("image/"):
            media_tokens += 258
        else:  # a document: Gemini reads a PDF's text and sees its pages
            text, extra = file_prompt(blob["mimeType"], base64.b64decode(blob["data"]))
            prompt, media_tokens = f"{prompt}\n{text}", media_tokens + extra
    prompt_tokens = _count(prompt) + media_tokens
    if mock.too_long(model, prompt_tokens):
        return error(400, f"The input token count ({prompt_tokens}) exceeds the maximum number of tokens allowed "
                          f"({behaviour.context_window}).")
    if behaviour.safety_block == "prompt":
        mock.account(prompt_tokens, 0)
        blocked = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]},
            "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
            "modelVersion": model}
        if stream:
            return StreamResponse(_one_event(blocked))
        return Response(200, orjson.dumps(blocked))
    from switchboard.testing.mock_upstream import stopped_at, truncate_to_tokens

    config = body.get("generationConfig") or {}
    call = _pick_call(body)
    text = mock.reply_for(model, prompt)
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        text = orjson.dumps(example_of(schema, text) if schema else {"answer": text}).decode()
    if call is None:
        text, _ = stopped_at(text, config.get("stopSequences") or [])
    finish = "STOP"
    limit = config.get("maxOutputTokens")
    if call is None and limit is not None and _count(text) > limit:
        text, finish = truncate_to_tokens(text, limit), "MAX_TOKENS"
    if call is None and behaviour.safety_block == "output":
        text, finish = truncate_to_tokens(text, 2), "SAFETY"
    response_id = uuid.uuid4().hex[:20]
    if stream:
        return StreamResponse(_stream(mock, model, response_id, text, call, finish, prompt_tokens,
                                      _shows_thoughts(config), bool(config.get("responseLogprobs"))), headers={
            "content-type": "text/event-stream"})
    await mock.pace_first(behaviour)
    completion_tokens = _count(text) if call is None else 8
    mock.account(prompt_tokens, completion_tokens + THOUGHTS_TOKENS)
    parts = [_call_part(call, model)] if call is not None else [{"text": text}]
    if _shows_thoughts(config):
        parts.insert(0, {"text": THOUGHT_SUMMARY, "thought": True})
    candidate = {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}
    if config.get("responseLogprobs") and call is None:
        candidate["logprobsResult"] = _logprobs(text, behaviour.logprob, config.get("logprobs"))
    result = {"candidates": [candidate], "usageMetadata": _usage(prompt_tokens, completion_tokens),
              "modelVersion": model, "responseId": response_id}
    return Response(200, orjson.dumps(result))


def _logprobs(text: str, logprob: float, top: int | None) -> dict[str, Any]:
    """Gemini's `logprobsResult` for an answer: every word chosen at `logprob`, with `top` candidates per step."""
    from switchboard.testing.mock_upstream import words_of

    chosen = [{"token": w, "logProbability": logprob} for w in words_of(text)]
    result: dict[str, Any] = {"chosenCandidates": chosen, "logProbabilitySum": logprob * len(chosen)}
    if top:
        result["topCandidates"] = [{"candidates": [c, *({"token": f"alt{k}", "logProbability": logprob - k - 1}
                                                          for k in range(top - 1))]} for c in chosen]
    return result


def _count(text: str) -> int:
    from switchboard.testing.mock_upstream import count_tokens

    return count_tokens(text)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion_tokens,
            "thoughtsTokenCount": THOUGHTS_TOKENS,
            "totalTokenCount": prompt_tokens + completion_tokens + THOUGHTS_TOKENS,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]}


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\r\n\r\n"


async def _one_event(data: dict[str, Any]) -> AsyncIterator[bytes]:
    yield _event(data)


def _shows_thoughts(config: dict[str, Any]) -> bool:
    return bool((config.get("thinkingConfig") or {}).get("includeThoughts"))


async def _stream(mock: MockUpstream, model: str, response_id: str, text: str, call: dict[str, Any] | None,
                  finish: str, prompt_tokens: int, thoughts: bool = False,
                  logprobs: bool = False) -> AsyncIterator[bytes]:
    from switchboard.testing.mock_upstream import words_of

    behaviour = mock.behaviour(model)
    cut = mock.cut_after(model)
    await mock.pace_first(behaviour)
    pieces = [] if call is not None else words_of(text)
    running = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
    base = {"modelVersion": model, "responseId": response_id}
    if thoughts:
        yield _event({"candidates": [{"content": {"parts": [{"text": THOUGHT_SUMMARY, "thought": True}],
                                                  "role": "model"}, "index": 0}], "usageMetadata": running, **base})
    for sent, piece in enumerate(pieces[:-1] if pieces else []):
        if cut is not None and sent >= cut.after_chunks:
            mock.stats.faults += 1
            if cut.kind == "end":  # the body ends cleanly, unfinished
                return
            raise AbortConnection()
        if behaviour.tokens_per_second:
            await asyncio.sleep(1.0 / behaviour.tokens_per_second)
        candidate = {"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}
        if logprobs:
            candidate["logprobsResult"] = _logprobs(piece, behaviour.logprob, None)
        yield _event({"candidates": [candidate], "usageMetadata": running, **base})
    last_parts = [_call_part(call, model)] if call is not None else [{"text": pieces[-1] if pieces else ""}]
    completion_tokens = _count(text) if call is None else 8
    mock.account(prompt_tokens, completion_tokens + THOUGHTS_TOKENS)
    last = {"content": {"parts": last_parts, "role": "model"}, "finishReason": finish, "index": 0}
    if logprobs and call is None and pieces:
        last["logprobsResult"] = _logprobs(pieces[-1], behaviour.logprob, None)
    yield _event({"candidates": [last], "usageMetadata": _usage(prompt_tokens, completion_tokens), **base})


async def embed(mock: MockUpstream, request: Request, body: dict[str, Any], model: str) -> Response:
    from switchboard.testing.mock_upstream import fake_embedding

    count_model(mock, model)
    if not request.headers.get("x-goog-api-key"):
        return error(403, "Method doesn't allow unregistered callers.")
    fault = await injected_fault(mock, model)
    if fault is not None:
        return fault_error(*fault)
    requests = body.get("requests")
    if set(body) - {"requests"} or not isinstance(requests, list) or not requests:
        return error(400, "* BatchEmbedContentsRequest.requests: requests is required")
    vectors = []
    tokens = 0
    for i, req in enumerate(requests):
        if req.get("model") != f"models/{model}":
            return error(400, f"* BatchEmbedContentsRequest.requests[{i}].model: the model must match the request "
                              f"URL (models/{model})")
        parts = (req.get("content") or {}).get("parts") or []
        text = "".join(p.get("text", "") for p in parts)
        if not parts:
            return error(400, f"* BatchEmbedContentsRequest.requests[{i}].content: content is required")
        tokens += _count(text)
        dims = int(req.get("outputDimensionality") or mock.behaviour(model).embedding_dims)
        vectors.append({"values": fake_embedding(text, dims)})
    mock.account(tokens, 0)
    return Response(200, orjson.dumps({"embeddings": vectors}))
