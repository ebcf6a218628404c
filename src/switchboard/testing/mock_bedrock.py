"""The mock upstream's AWS Bedrock runtime: `POST /model/{modelId}/converse` and `/converse-stream`.

Authentication is checked like AWS does: a SigV4 `Authorization` header with
`x-amz-date` is required (or a Bedrock API key as a bearer token); for the
test credentials below the signature itself is recomputed with botocore and
compared, so a request the gateway signed wrongly fails with AWS's
InvalidSignatureException. Bodies are validated against the Converse schema
(unknown keys, roles that do not alternate, blank text, tool blocks without a
toolConfig, temperature above 1, documents outside a user turn with text,
more than five a turn, or badly named...) and refused with a ValidationException.
Errors carry their type in `x-amzn-errortype` with ``{"message": ...}``
bodies; streams are AWS event-stream frames (prelude, headers, JSON payload,
CRC32s). An injected fault with status 424 in a stream arrives as an
in-stream `modelStreamErrorException` frame after the first word.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import time
import zlib
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from switchboard.http.server import AbortConnection, Request, Response, StreamResponse
from switchboard.testing.mock_anthropic import signature_of
from switchboard.testing.mock_native import Invalid, count_model, injected_fault
from switchboard.testing.pdf import file_prompt
from switchboard.testing.schema_example import example_of

if TYPE_CHECKING:
    from switchboard.testing.mock_upstream import MockUpstream

# Credentials whose signatures the mock verifies; any other access key is "not recognised".
MOCK_ACCESS_KEY_ID = "AKIAMOCKSWITCHBOARD0"
MOCK_SECRET_ACCESS_KEY = "mock/Secret+Key0123456789abcdefghijklmno"
MOCK_CREDENTIALS = {MOCK_ACCESS_KEY_ID: MOCK_SECRET_ACCESS_KEY}
GUARDRAIL_MESSAGE = "Sorry, the model cannot answer this question."
CONVERSE_MAX_STOPS = 2500  # InferenceConfiguration.stopSequences (botocore's model: max 2500)

_REQUEST_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                   "additionalModelRequestFields", "additionalModelResponseFieldPaths", "requestMetadata",
                   "performanceConfig", "promptVariables", "outputConfig", "serviceTier"}
_BLOCKS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "cachePoint",
           "reasoningContent"}
_ERROR_TYPES = {400: "ValidationException", 401: "UnrecognizedClientException", 403: "AccessDeniedException",
                404: "ResourceNotFoundException", 408: "ModelTimeoutException", 424: "ModelErrorException",
                429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException"}
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def route(mock: MockUpstream, path: str):
    parts = path.split("/")
    if len(parts) != 4:
        return None
    model, action = unquote(parts[2]), parts[3]
    if action == "converse":
        return lambda request, body: converse(mock, request, body, model, stream=False)
    if action == "converse-stream":
        return lambda request, body: converse(mock, request, body, model, stream=True)
    return None


def error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    head = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-requestid": "mock-" + str(time.time_ns()), **(headers or {})}
    return Response(status, orjson.dumps({"message": message}), head)


def fault_error(status: int, message: str, headers: dict[str, str]) -> Response:
    if status == 401:
        return error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    if message == "injected fault":
        message = {429: "Too many requests, please wait before trying again.",
                   503: "Bedrock is unable to process your request.",
                   403: "You don't have access to the model with the specified model ID."}.get(status, message)
    return error(status, _ERROR_TYPES.get(status, "InternalServerException"), message, headers)


# ---------------------------------------------------------------- authentication


def check_auth(request: Request) -> Response | None:
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer ") and len(auth) > 7:
        return None
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    fields = dict(item.strip().split("=", 1) for item in auth[len("AWS4-HMAC-SHA256 "):].split(",") if "=" in item)
    amz_date = request.headers.get("x-amz-date")
    if not amz_date or not {"Credential", "SignedHeaders", "Signature"} <= set(fields):
        return error(403, "IncompleteSignatureException",
                     "Authorization header requires 'Credential', 'Signature', 'SignedHeaders' and an X-Amz-Date.")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[3] != "bedrock" or scope[4] != "aws4_request":
        return error(403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")
    access_key, day, region, service = scope[:4]
    secret = MOCK_CREDENTIALS.get(access_key)
    if secret is None:
        return error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return error(403, "IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")
    if abs(time.time() - signed_at.timestamp()) > 300 or day != amz_date[:8]:
        return error(403, "InvalidSignatureException", "Signature expired or not yet current.")
    names = fields["SignedHeaders"].split(";")
    if "host" not in names or "x-amz-date" not in names or any(n not in request.headers for n in names):
        return error(403, "InvalidSignatureException", "The request signature we calculated does not match the "
                                                       "signature you provided: a signed header is missing.")
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(request.body).hexdigest():
        return error(400, "XAmzContentSHA256Mismatch",
                     "The provided 'x-amz-content-sha256' header does not match what was computed.")
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://{request.headers['host']}{request.path}" + (f"?{request.query}" if request.query else "")
    aws = AWSRequest(method=request.method, url=url, data=request.body, headers={n: request.headers[n] for n in names})
    aws.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret, request.headers.get("x-amz-security-token")), service, region)
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return error(403, "InvalidSignatureException",
                     "The request signature we calculated does not match the signature you provided. Check your "
                     "AWS Secret Access Key and signing method. Consult the service documentation for details.")
    return None


# ---------------------------------------------------------------- validation


def _check_block(block: Any, where: str, tool_ids: set[str]) -> None:
    if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCKS:
        raise Invalid(f"The content block at {where} must set exactly one of: {', '.join(sorted(_BLOCKS))}.")
    kind, value = next(iter(block.items()))
    _check_cache_point(block, where)
    if kind == "text" and (not isinstance(value, str) or not value.strip()):
        raise Invalid(f"The text field in the ContentBlock object at {where} is blank. Add text to the text field, "
                      "and try again.")
    if kind == "image":
        if not isinstance(value, dict) or value.get("format") not in ("png", "jpeg", "gif", "webp"):
            raise Invalid(f"1 validation error detected: Value at '{where}.image.format' failed to satisfy "
                          "constraint: Member must satisfy enum value set: [png, jpeg, gif, webp]")
        if not _source_bytes(value):
            raise Invalid(f"Invalid base64 or empty image bytes at {where}.image.source.bytes")
    if kind == "document":
        _check_document(value, where)
    if kind == "reasoningContent":
        text = value.get("reasoningText") if isinstance(value, dict) else None
        signed = isinstance(text, dict) and isinstance(text.get("text"), str) and isinstance(text.get("signature"), str)
        if not signed and not (isinstance(value, dict) and "redactedContent" in value):
            raise Invalid(f"{where}.reasoningContent requires reasoningText (text, signature) or redactedContent.")
    if kind == "toolUse":
        if not isinstance(value, dict) or not value.get("toolUseId") or not value.get("name") \
                or not isinstance(value.get("input"), (dict, list)):
            raise Invalid(f"{where}.toolUse requires toolUseId, name and a JSON input.")
        tool_ids.add(value["toolUseId"])
    if kind == "toolResult":
        if not isinstance(value, dict) or not value.get("toolUseId") or not isinstance(value.get("content"), list):
            raise Invalid(f"{where}.toolResult requires toolUseId and content.")
        for item in value["content"]:
            if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ("text", "json", "image", "document"):
                raise Invalid(f"{where}.toolResult.content blocks must be one of text, json, image, document.")
            if "document" in item:
                _check_document(item["document"], f"{where}.toolResult.content")


def _source_bytes(value: dict[str, Any]) -> bytes:
    """An image's or document's `source.bytes`, decoded; empty when missing or not base64."""
    raw = (value.get("source") or {}).get("bytes")
    try:
        return base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
    except (binascii.Error, ValueError):
        return b""


_DOCUMENT_NAME = re.compile(r"^(?!.*\s\s)[A-Za-z0-9\s\-()\[\]]{1,200}$")
_DOCUMENT_FORMATS = ("pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md")


def _check_document(value: Any, where: str) -> None:
    if not isinstance(value, dict) or value.get("format") not in _DOCUMENT_FORMATS:
        raise Invalid(f"1 validation error detected: Value at '{where}.document.format' failed to satisfy "
                      f"constraint: Member must satisfy enum value set: [{', '.join(_DOCUMENT_FORMATS)}]")
    if not isinstance(value.get("name"), str) or not _DOCUMENT_NAME.match(value["name"]):
        raise Invalid(f"The document file name at {where}.document.name can only contain alphanumeric characters, "
                      "whitespace characters, hyphens, parentheses, and square brackets. The name can't contain "
                      "more than one consecutive whitespace character.")
    data = _source_bytes(value)
    if not data or (value["format"] == "pdf" and not data.startswith(b"%PDF-")):
        raise Invalid(f"Invalid or empty document bytes at {where}.document.source.bytes")


def documents_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A turn's documents: its own blocks', then those inside its tool results."""
    blocks = [b for b in message["content"] if isinstance(b, dict)]
    return [b["document"] for b in blocks if "document" in b] + [
        item["document"] for b in blocks if isinstance(b.get("toolResult"), dict)
        for item in b["toolResult"]["content"] if "document" in item]


def _check_documents(messages: list[dict[str, Any]]) -> None:
    """Where documents may be: user turns, at most five a turn, a turn's own beside a text block (a tool
    result's hold the tool's output), names unique."""
    names: set[str] = set()
    for i, msg in enumerate(messages):
        documents = documents_of(msg)
        if not documents:
            continue
        if msg["role"] != "user":
            raise Invalid(f"messages.{i}: You can only include images and documents if the role is user.")
        if len(documents) > 5:
            raise Invalid(f"messages.{i}: You can include up to five documents.")
        own = any(isinstance(b, dict) and "document" in b for b in msg["content"])
        if own and not any(isinstance(b, dict) and "text" in b for b in msg["content"]):
            raise Invalid(f"messages.{i}: If you include a ContentBlock with a document field in the array, you must "
                          "also include a ContentBlock with a text field.")
        for doc in documents:
            if doc["name"] in names:
                raise Invalid(f"messages.{i}: Found duplicate document names: {doc['name']}. Each document must "
                              "have a unique name.")
            names.add(doc["name"])


def document_prompt(value: dict[str, Any]) -> tuple[str, int]:
    """What the model reads of a document block, and the tokens its pages cost besides."""
    data = base64.b64decode(value["source"]["bytes"])
    return file_prompt("application/pdf" if value["format"] == "pdf" else "text/plain", data)


def _check_cache_point(block: Any, where: str) -> None:
    point = block.get("cachePoint") if isinstance(block, dict) else None
    if point is None:
        return
    if not isinstance(point, dict) or point.get("type") != "default" or set(point) - {"type", "ttl"}:
        raise Invalid(f"1 validation error detected: Value at '{where}.cachePoint.type' failed to satisfy "
                      "constraint: Member must satisfy enum value set: [default]")
    if point.get("ttl", "5m") not in ("5m", "1h"):
        raise Invalid(f"1 validation error detected: Value at '{where}.cachePoint.ttl' failed to satisfy "
                      "constraint: Member must satisfy enum value set: [5m, 1h]")


def thinking_of(body: dict[str, Any]) -> dict[str, Any] | None:
    thinking = (body.get("additionalModelRequestFields") or {}).get("thinking")
    return thinking if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive") else None


def _check_thinking(body: dict[str, Any]) -> None:
    """Claude's rules for extended thinking, as Bedrock passes them on."""
    thinking = thinking_of(body)
    if thinking is None:
        return
    config = body.get("inferenceConfig") or {}
    budget = thinking.get("budget_tokens")
    if thinking["type"] == "enabled" and (not isinstance(budget, int) or budget < 1024
                                          or budget >= config.get("maxTokens", 4096)):
        raise Invalid("The model returned the following errors: `max_tokens` must be greater than "
                      "`thinking.budget_tokens`, which must be at least 1024")
    if config.get("temperature") not in (None, 1):
        raise Invalid("The model returned the following errors: `temperature` may only be set to 1 when thinking "
                      "is enabled.")
    calls = [m for m in body["messages"] if m["role"] == "assistant" and any("toolUse" in b for b in m["content"])]
    if calls:
        first = calls[-1]["content"][0].get("reasoningContent")
        text = (first or {}).get("reasoningText") or {}
        if first is None or ("redactedContent" not in first and text.get("signature") != signature_of(
                text.get("text") or "")):
            raise Invalid("The model returned the following errors: Expected `thinking` or `redacted_thinking`, "
                          "but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start "
                          "with a thinking block.")


def _check_guardrail(config: Any, stream: bool) -> None:
    if config is None:
        return
    fields = {"guardrailIdentifier", "guardrailVersion", "trace"} | ({"streamProcessingMode"} if stream else set())
    if not isinstance(config, dict) or set(config) - fields:
        extra = sorted(set(config) - fields) if isinstance(config, dict) else ["guardrailConfig"]
        raise Invalid(f"Malformed input request: extraneous key [{extra[0]}] is not permitted, please reformat your "
                      "input and try again.")
    for key in ("guardrailIdentifier", "guardrailVersion"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise Invalid(f"1 validation error detected: Value at 'guardrailConfig.{key}' failed to satisfy "
                          "constraint: Member must not be null")
    if config.get("trace", "disabled") not in ("enabled", "disabled", "enabled_full"):
        raise Invalid("1 validation error detected: Value at 'guardrailConfig.trace' failed to satisfy constraint: "
                      "Member must satisfy enum value set: [enabled, disabled, enabled_full]")
    if config.get("streamProcessingMode", "sync") not in ("sync", "async"):
        raise Invalid("1 validation error detected: Value at 'guardrailConfig.streamProcessingMode' failed to "
                      "satisfy constraint: Member must satisfy enum value set: [sync, async]")


def validate(body: dict[str, Any], stream: bool = False) -> None:
    for key in body:
        if key not in _REQUEST_FIELDS:
            raise Invalid(f"Malformed input request: extraneous key [{key}] is not permitted, please reformat your "
                          "input and try again.")
    _check_guardrail(body.get("guardrailConfig"), stream)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("A conversation must start with a user message. Try again with a conversation that starts "
                      "with a user message.")
    uses_tools = False
    previous_ids: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"} or msg["role"] not in ("user", "assistant"):
            raise Invalid(f"messages.{i} must have exactly a role (user or assistant) and content.")
        if i == 0 and msg["role"] != "user":
            raise Invalid("A conversation must start with a user message. Try again with a conversation that "
                          "starts with a user message.")
        if i > 0 and msg["role"] == messages[i - 1]["role"]:
            raise Invalid("A conversation must alternate between user and assistant roles. Make sure the "
                          "conversation alternates between user and assistant roles and try again.")
        if not isinstance(msg["content"], list) or not msg["content"]:
            raise Invalid(f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock "
                          "object to the content field and try again.")
        ids: set[str] = set()
        for j, block in enumerate(msg["content"]):
            _check_block(block, f"messages.{i}.content.{j}", ids)
            if isinstance(block, dict) and ("toolUse" in block or "toolResult" in block):
                uses_tools = True
            if isinstance(block, dict) and "toolResult" in block and block["toolResult"]["toolUseId"] not in previous_ids:
                raise Invalid(f"messages.{i}.content.{j}.toolResult.toolUseId does not match a toolUse id of the "
                              "previous assistant turn.")
        previous_ids = ids
    _check_documents(messages)
    for j, block in enumerate(body.get("system") or []):
        if not isinstance(block, dict) or set(block) - {"text", "guardContent", "cachePoint"} \
                or ("text" in block and not str(block["text"]).strip()):
            raise Invalid(f"system.{j} must be a non-blank text block.")
        _check_cache_point(block, f"system.{j}")
    config = body.get("inferenceConfig") or {}
    extra = set(config) - {"maxTokens", "temperature", "topP", "stopSequences"}
    if extra:
        raise Invalid(f"Malformed input request: extraneous key [{sorted(extra)[0]}] is not permitted in inferenceConfig.")
    if len(config.get("stopSequences") or ()) > CONVERSE_MAX_STOPS:
        raise Invalid("1 validation error detected: Value at 'inferenceConfig.stopSequences' failed to satisfy "
                      f"constraint: Member must have length less than or equal to {CONVERSE_MAX_STOPS}")
    if any(not s for s in config.get("stopSequences") or ()):
        raise Invalid("1 validation error detected: Value at 'inferenceConfig.stopSequences' failed to satisfy "
                      "constraint: Member must satisfy constraint: "
                      "[Member must have length greater than or equal to 1]")
    for key in ("temperature", "topP"):
        if key in config and not (isinstance(config[key], (int, float)) and 0 <= config[key] <= 1):
            raise Invalid(f"1 validation error detected: Value '{config[key]}' at 'inferenceConfig.{key}' failed to "
                          "satisfy constraint: Member must have value less than or equal to 1")
    if "maxTokens" in config and not (isinstance(config["maxTokens"], int) and config["maxTokens"] >= 1):
        raise Invalid("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy "
                      "constraint: Member must have value greater than or equal to 1")
    tool_config = body.get("toolConfig")
    if uses_tools and tool_config is None:
        raise Invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    if tool_config is not None:
        tools = tool_config.get("tools")
        if set(tool_config) - {"tools", "toolChoice"} or not isinstance(tools, list) or not tools:
            raise Invalid("toolConfig.tools must hold at least one tool.")
        for k, tool in enumerate(tools):
            if isinstance(tool, dict) and set(tool) == {"cachePoint"}:
                _check_cache_point(tool, f"toolConfig.tools.{k}")
                continue
            spec = tool.get("toolSpec") if isinstance(tool, dict) else None
            if not isinstance(spec, dict) or not spec.get("name") or set(spec) - {"name", "description", "inputSchema", "strict"} \
                    or not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
                raise Invalid(f"toolConfig.tools.{k}.toolSpec requires a name and inputSchema.json.")
        choice = tool_config.get("toolChoice")
        if choice is not None and (not isinstance(choice, dict) or len(choice) != 1
                                   or next(iter(choice)) not in ("auto", "any", "tool")):
            raise Invalid("toolConfig.toolChoice must set exactly one of auto, any, tool.")
    _check_thinking(body)
    points = _segments(body)[1]
    if len(points) > 4:
        raise Invalid(f"The number of cache points ({len(points)}) exceeds the maximum of 4.")
    ttls = [ttl for _, ttl in points]
    if "5m" in ttls and "1h" in ttls[ttls.index("5m"):]:
        raise Invalid("Cache point TTLs must not increase in processing order (toolConfig, system, messages): "
                      "a 1h cache point cannot follow a 5m one.")
    output = body.get("outputConfig")
    if output is not None:
        fmt = output.get("textFormat") or {}
        schema = ((fmt.get("structure") or {}).get("jsonSchema") or {}).get("schema")
        if fmt.get("type") != "json_schema" or not isinstance(schema, str):
            raise Invalid("outputConfig.textFormat requires type json_schema and structure.jsonSchema.schema (a string).")
        try:
            orjson.loads(schema)
        except orjson.JSONDecodeError:
            raise Invalid("outputConfig.textFormat.structure.jsonSchema.schema is not valid JSON.") from None


# ---------------------------------------------------------------- answers


def _segments(body: dict[str, Any]) -> tuple[list[str], list[tuple[int, str]]]:
    """The prompt's texts in cache order (tools, system, messages) and its cache points: (position, TTL)."""
    texts: list[str] = []
    points: list[tuple[int, str]] = []
    tools = ((body.get("toolConfig") or {}).get("tools") or []) if isinstance(body.get("toolConfig"), dict) else []
    for block in [*tools, *(body.get("system") or ())] + [b for m in body.get("messages") or () if isinstance(m, dict)
                                                         for b in m.get("content") or ()]:
        if not isinstance(block, dict):
            continue
        if "cachePoint" in block:
            point = block["cachePoint"]
            points.append((len(texts), point.get("ttl", "5m") if isinstance(point, dict) else "5m"))
        elif "toolSpec" in block:
            texts.append(orjson.dumps(block["toolSpec"]).decode())
        elif "text" in block:
            texts.append(str(block["text"]))
        elif "document" in block:
            texts.append(document_prompt(block["document"])[0])
    return texts, points


def _prompt_parts(body: dict[str, Any]) -> tuple[str, str, str]:
    """(rest, cacheable prefix, its part up to the last one-hour cache point): the prefix ends at the last
    cache point; tools count only when one exists."""
    texts, points = _segments(body)
    tools = len([t for t in ((body.get("toolConfig") or {}).get("tools") or []) if "toolSpec" in t])
    if not points:
        return "\n".join(texts[tools:]), "", ""
    hour = max((at for at, ttl in points if ttl == "1h"), default=0)
    return "\n".join(texts[points[-1][0]:]), "\n".join(texts[:points[-1][0]]), "\n".join(texts[:hour])


def _pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("toolConfig")
    if config is None or any("toolResult" in b for b in body["messages"][-1]["content"]):
        return None
    choice = config.get("toolChoice") or {"auto": {}}
    name = (choice.get("tool") or {}).get("name") or config["tools"][0]["toolSpec"]["name"]
    spec = next((t["toolSpec"] for t in config["tools"] if (t.get("toolSpec") or {}).get("name") == name), {})
    return {"toolUseId": "tooluse_" + str(time.time_ns())[-12:], "name": name,
            "input": example_of((spec.get("inputSchema") or {}).get("json"), "mock")}


async def converse(mock: MockUpstream, request: Request, body: dict[str, Any], model: str,
                   stream: bool) -> Response | StreamResponse:
    count_model(mock, model)
    denied = check_auth(request)
    if denied is not None:
        return denied
    fault = await injected_fault(mock, model)
    stream_fault = None
    if fault is not None:
        if not (stream and fault[0] == 424):
            return fault_error(*fault)
        stream_fault = fault[1]
    try:
        validate(body, stream)
    except Invalid as exc:
        return error(exc.status, "ValidationException", exc.message)
    behaviour = mock.behaviour(model)
    from switchboard.testing.mock_upstream import count_tokens, stopped_at, truncate_to_tokens

    rest, prefix, hour_prefix = _prompt_parts(body)
    prompt = prefix + rest
    pages = sum(document_prompt(doc)[1] for m in body["messages"] for doc in documents_of(m))
    prompt_tokens, prefix_tokens = count_tokens(rest) + pages, count_tokens(prefix)
    if mock.too_long(model, prompt_tokens + prefix_tokens):
        return error(400, "ValidationException", "Input is too long for requested model.")
    key = (model, hashlib.sha256(prefix.encode()).digest())
    cache_read = prefix_tokens if prefix and key in mock.prompt_cache else 0
    if prefix:
        mock.prompt_cache.add(key)
    tool = _pick_tool(body)
    text = mock.reply_for(model, prompt)
    if body.get("outputConfig"):
        schema = orjson.loads(body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"])
        text = orjson.dumps(example_of(schema, text)).decode()
    stop, stopped_by = "end_turn", None
    limit = (body.get("inferenceConfig") or {}).get("maxTokens")
    if tool is None:
        text, stopped_by = stopped_at(text, (body.get("inferenceConfig") or {}).get("stopSequences") or [])
        stop = "stop_sequence" if stopped_by is not None else stop
    if tool is None and limit is not None and count_tokens(text) > limit:
        text, stop = truncate_to_tokens(text, limit), "max_tokens"
    if behaviour.safety_block == "prompt":
        text, stop, tool = GUARDRAIL_MESSAGE, "guardrail_intervened", None
    elif behaviour.safety_block == "output":
        text, stop, tool = text.split(" ")[0], "content_filtered", None
    completion_tokens = count_tokens(text) if tool is None else 10
    usage = {"inputTokens": prompt_tokens, "outputTokens": completion_tokens,
             "totalTokens": prompt_tokens + prefix_tokens + completion_tokens}
    if prefix:
        written = prefix_tokens - cache_read
        usage.update(cacheReadInputTokens=cache_read, cacheWriteInputTokens=written)
        hour = min(count_tokens(hour_prefix), written)
        details = [{"ttl": "1h", "inputTokens": hour}, {"ttl": "5m", "inputTokens": written - hour}]
        if written:  # 1h before 5m, empty when nothing was written
            usage["cacheDetails"] = [d for d in details if d["inputTokens"]]
    if tool is not None:
        stop = "tool_use"
    extra = {}  # what Claude's native answer has at the paths asked for (the mock knows one)
    if "claude" in model and "/delta/stop_sequence" in (body.get("additionalModelResponseFieldPaths") or ()):
        extra["additionalModelResponseFields"] = {"delta": {"stop_sequence": stopped_by}}
    thought = "Weighing what the user asked before answering." if thinking_of(body) else ""
    if stream:
        return StreamResponse(_stream(mock, model, text, tool, stop, usage, stream_fault, thought, extra),
                              content_type="application/vnd.amazon.eventstream")
    await mock.pace_first(behaviour)
    mock.account(prompt_tokens + prefix_tokens, completion_tokens)
    content = [{"toolUse": tool}] if tool is not None else [{"text": text}]
    if thought:
        signed = {"text": thought, "signature": signature_of(thought)}
        content.insert(0, {"reasoningContent": {"reasoningText": signed}})
    return Response(200, orjson.dumps({"output": {"message": {"role": "assistant", "content": content}},
                                       "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 12},
                                       **extra}))


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    head = b"".join(len(k).to_bytes(1, "big") + k.encode() + b"\x07" + len(v.encode()).to_bytes(2, "big") + v.encode()
                    for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(head).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + head + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def event(name: str, data: dict[str, Any]) -> bytes:
    return frame({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                 orjson.dumps({**data, "p": _PADDING[: 1 + len(name)]}))


def exception(name: str, message: str) -> bytes:
    return frame({":exception-type": name, ":content-type": "application/json", ":message-type": "exception"},
                 orjson.dumps({"message": message}))


async def _stream(mock: MockUpstream, model: str, text: str, tool: dict[str, Any] | None, stop: str,
                  usage: dict[str, Any], stream_fault: str | None, thought: str = "",
                  extra: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
    from switchboard.testing.mock_upstream import words_of

    behaviour = mock.behaviour(model)
    cut = mock.cut_after(model)
    await mock.pace_first(behaviour)
    yield event("messageStart", {"role": "assistant"})
    if stream_fault is not None:  # once the stream has said something, so the gateway cannot fail over
        yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": words_of(text)[0]}})
        yield exception("modelStreamErrorException", stream_fault)
        return
    index = 0
    if thought:
        for piece in words_of(thought):
            yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": piece}}})
        yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {
            "signature": signature_of(thought)}}})
        yield event("contentBlockStop", {"contentBlockIndex": 0})
        index = 1
    if tool is not None:
        yield event("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": {
            "toolUseId": tool["toolUseId"], "name": tool["name"]}}})
        encoded = orjson.dumps(tool["input"]).decode()
        half = len(encoded) // 2
        for piece in (encoded[:half], encoded[half:]):
            yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}})
    else:
        for sent, piece in enumerate(words_of(text)):
            if cut is not None and sent >= cut.after_chunks:
                mock.stats.faults += 1
                if cut.kind == "end":  # the body ends cleanly, unfinished
                    return
                raise AbortConnection()
            if behaviour.tokens_per_second:
                await asyncio.sleep(1.0 / behaviour.tokens_per_second)
            yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}})
    yield event("contentBlockStop", {"contentBlockIndex": index})
    yield event("messageStop", {"stopReason": stop, **(extra or {})})
    mock.account(usage["inputTokens"] + usage.get("cacheReadInputTokens", 0) + usage.get("cacheWriteInputTokens", 0),
                 usage["outputTokens"])
    yield event("metadata", {"usage": usage, "metrics": {"latencyMs": 15}})
