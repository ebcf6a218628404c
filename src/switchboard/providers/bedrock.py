"""AWS Bedrock adapter: the Converse and ConverseStream APIs, signed with SigV4.

Converse is one request shape for every Bedrock model: `messages` of content
blocks (text, image bytes, document bytes, toolUse, toolResult), `system`, `inferenceConfig`
and `toolConfig`. Requests are signed with botocore's SigV4 signer (never a
home-made one); botocore is heavy, so it is imported on the first Bedrock
request, and one signer per deployment is kept. A deployment with `api_key`
and no AWS keys uses a Bedrock API key as a bearer token instead.

ConverseStream answers in AWS's binary event-stream framing
(`application/vnd.amazon.eventstream`), decoded incrementally by botocore's
checksum-verifying parser; failures inside the stream arrive as exception
frames and become `UpstreamError`s of the matching kind, like HTTP errors,
whose type Bedrock names in the `x-amzn-errortype` header.

Prompt caching: a `cache_control` breakpoint on a content part, tool result or
tool (as Anthropic-format and LiteLLM-style clients mark them) becomes a
`cachePoint` block right after it, with the mark's `ttl` ('5m' or '1h'); `cacheReadInputTokens`
and `cacheWriteInputTokens` come back as `cached_tokens` and `cache_write_tokens`, and the
one-hour writes of `cacheDetails` as `cache_write_1h_tokens`.

Extended thinking (Claude models): as with Anthropic's API (providers/reasoning.py),
sent as `additionalModelRequestFields.thinking`; `reasoningContent` blocks come back as
`reasoning_content` and signed `thinking_blocks`, and go back before the turn's tool use.

Stop sequences: Converse takes at most 2,500 (`inferenceConfig.stopSequences`; earlier versions of the
API took 4); the gateway would apply any others itself (`providers.local_stops`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from typing import Any
from urllib.parse import quote

import orjson

from switchboard import errors
from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import UpstreamError
from switchboard.http.client import host_header
from switchboard.providers import canonical as c
from switchboard.providers.base import MALFORMED, Provider, iter_body, malformed_answer, read_body, retry_after
from switchboard.providers.documents import EXTENSIONS, document_of
from switchboard.providers.local_stops import Chunks, StopLimits, StopPlan, whitespace_only
from switchboard.providers.reasoning import CLAUDE_EFFORTS, anthropic_blocks, drop_sampling, thinking_for

STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
    "model_context_window_exceeded": "length", "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter", "malformed_model_output": "stop", "malformed_tool_use": "stop",
}
DEFAULT_MAX_TOKENS = 4096  # when a thinking Claude needs one and the client gave none
_CONVERSE_STOPS = StopLimits(most=2500)  # InferenceConfiguration.stopSequences: "Maximum number of 2500 items"
# Claude refuses whitespace-only sequences on its own API; whether Converse passes that refusal on is not
# documented, and the gateway applying them gives the same answer either way.
_CONVERSE_CLAUDE_STOPS = StopLimits(most=2500, refuses=whitespace_only)
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp"}

_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")


def _place_documents(kind: str, content: list[dict[str, Any]]) -> None:
    """Bedrock wants a text block beside a turn's documents. A turn of tool results has none: its documents (a
    tool's files, which follow its result in the canonical form) go into the last tool result, as Converse's
    tool results may hold documents; any other turn of documents without text is a 400."""
    if not any("document" in b for b in content) or any("text" in b for b in content):
        return
    results = [b["toolResult"] for b in content if "toolResult" in b]
    if not results:
        raise c.unsupported(kind, "messages", "a file without text beside it in the same turn "
                                              "(Bedrock needs a text part with each document)")
    results[-1]["content"].extend(b for b in content if "document" in b)
    content[:] = [b for b in content if "document" not in b]


def _document_name(filename: str | None, taken: set[str]) -> str:
    """A document's name as Bedrock allows it (letters, digits, single spaces, hyphens, brackets; at most 200
    characters, unique in the request): the filename's stem, cleaned."""
    stem = filename.rsplit(".", 1)[0] if filename and "." in filename else filename or ""
    name = " ".join(_UNSAFE_IN_NAME.sub(" ", stem).split())[:190] or "document"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name} ({n})", n + 1
    taken.add(unique)
    return unique


# Bedrock's error type (x-amzn-errortype header, or the stream's :exception-type) -> our kind.
ERROR_KINDS = {
    "throttlingexception": errors.RATE_LIMIT, "servicequotaexceededexception": errors.RATE_LIMIT,
    "toomanyrequestsexception": errors.RATE_LIMIT,
    "serviceunavailableexception": errors.OVERLOADED,
    "modelnotreadyexception": errors.OVERLOADED,
    "accessdeniedexception": errors.AUTH, "unrecognizedclientexception": errors.AUTH,
    "invalidsignatureexception": errors.AUTH, "expiredtokenexception": errors.AUTH,
    "incompletesignatureexception": errors.AUTH, "missingauthenticationtokenexception": errors.AUTH,
    "modeltimeoutexception": errors.TIMEOUT,
    "modelerrorexception": errors.SERVER, "modelstreamerrorexception": errors.SERVER,
    "internalserverexception": errors.SERVER,
    "resourcenotfoundexception": errors.NOT_FOUND,
}
_INLINE_HASH_LIMIT = 64 * 1024
_TOO_LONG = ("too long", "input is too long", "context window", "context length", "too many input tokens",
             "max input tokens")


def _is_claude(deployment: Deployment) -> bool:
    return "claude" in deployment.upstream_model.lower()


class BedrockProvider(Provider):
    kind = "bedrock"

    def __init__(self, client) -> None:
        super().__init__(client)
        self._signers: dict[str, Any] = {}

    # ------------------------------------------------------------ where and how

    @staticmethod
    def region(deployment: Deployment) -> str:
        return str(deployment.options.get("region") or os.environ.get("AWS_REGION")
                   or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")

    def url(self, deployment: Deployment, action: str) -> str:
        base = deployment.base_url or f"https://bedrock-runtime.{self.region(deployment)}.amazonaws.com"
        return f"{base}/model/{quote(deployment.upstream_model, safe='')}/{action}"

    def headers(self, deployment: Deployment, url: str, body: bytes, accept: str,
                body_sha256: str | None = None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": accept}
        extra = deployment.options.get("headers")
        if extra:
            headers.update(extra)
        signer = self._signer(deployment)
        if isinstance(signer, str):
            headers["authorization"] = "Bearer " + signer
            return headers
        if body_sha256 is not None:
            headers["x-amz-content-sha256"] = body_sha256  # botocore signs this instead of hashing the body
        return sign(signer, url, body, headers)

    async def send(self, deployment: Deployment, action: str, body: bytes, accept: str):
        """POST a signed request. Signing costs ~0.15 ms inline; hashing a large body (images) goes to a thread."""
        url = self.url(deployment, action)
        digest = None
        if len(body) > _INLINE_HASH_LIMIT:
            digest = await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())
        return await self.open(deployment, "POST", url, self.headers(deployment, url, body, accept, digest), body)

    def _signer(self, deployment: Deployment) -> Any:
        """The deployment's SigV4 signer (built once), or a bearer token string."""
        signer = self._signers.get(deployment.id)
        if signer is not None:
            return signer
        opts = deployment.options
        key_id, secret, token = (opts.get("aws_access_key_id"), opts.get("aws_secret_access_key"),
                                 opts.get("aws_session_token"))
        if key_id is not None and secret is not None:
            creds = (key_id.reveal(), secret.reveal(), token.reveal() if token is not None else None)
        elif deployment.api_key is not None:
            signer = deployment.api_key.reveal()
        elif os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            creds = (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                     os.environ.get("AWS_SESSION_TOKEN") or None)
        elif os.environ.get("AWS_BEARER_TOKEN_BEDROCK"):
            signer = os.environ["AWS_BEARER_TOKEN_BEDROCK"]
        else:
            raise UpstreamError(errors.AUTH, f"{deployment.id}: no AWS credentials: set aws_access_key_id and "
                                             "aws_secret_access_key, api_key, or the AWS_* environment variables")
        if signer is None:
            try:
                from botocore.auth import SigV4Auth
                from botocore.credentials import Credentials
            except ImportError:
                raise UpstreamError(errors.SERVER, f"{deployment.id}: Bedrock needs botocore: "
                                                   "pip install 'switchboard[bedrock]'") from None
            signer = SigV4Auth(Credentials(*creds), "bedrock", self.region(deployment))
        self._signers[deployment.id] = signer
        return signer

    # ------------------------------------------------------------ request

    def stop_limits(self, deployment: Deployment) -> StopLimits:
        return _CONVERSE_CLAUDE_STOPS if _is_claude(deployment) else _CONVERSE_STOPS

    async def payload(self, request: ChatRequest, deployment: Deployment, stops: StopPlan,
                      stream: bool = False) -> dict[str, Any]:
        body = request.body
        c.single_choice(self.kind, body)
        c.openai_only(self.kind, body)
        c.no_logprobs(self.kind, body)
        images = await c.load_images(request, deployment, self.client)
        system: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        tools = body.get("tools")
        mode, forced = c.tool_choice(body)
        offers_tools = bool(tools) and mode != "none"
        document_names: set[str] = set()
        for i, msg in enumerate(body["messages"]):
            role = msg["role"]
            if role in ("system", "developer"):
                content = msg.get("content")
                if isinstance(content, list) and any(_marked(p) for p in content):
                    for part in content:
                        if part.get("type") == "text" and part["text"].strip():
                            system.append({"text": part["text"]})
                        if _marked(part):
                            system.append(_cache_point(part))
                elif c.content_text(content).strip():  # Bedrock refuses a blank system block
                    system.append({"text": c.content_text(content)})
                continue
            blocks = self._blocks(msg, i, images, document_names, offers_tools)
            if not blocks:
                continue
            bedrock_role = "assistant" if role == "assistant" else "user"
            if messages and messages[-1]["role"] == bedrock_role:
                messages[-1]["content"].extend(blocks)
            else:
                messages.append({"role": bedrock_role, "content": blocks})
        if document_names:
            for message in messages:
                _place_documents(self.kind, message["content"])
        payload: dict[str, Any] = {"messages": messages}
        if system:
            payload["system"] = system
        config = self._inference_config(body, stops.upstream)
        if config:
            payload["inferenceConfig"] = config
        if offers_tools:
            specs: list[dict[str, Any]] = []
            for t in tools:
                specs += [_tool_spec(t["function"]), _cache_point(t)] if _marked(t) else [_tool_spec(t["function"])]
            tool_config: dict[str, Any] = {"tools": specs}
            if mode == "required":
                tool_config["toolChoice"] = {"any": {}}
            elif mode == "function":
                tool_config["toolChoice"] = {"tool": {"name": forced}}
            elif mode == "auto":
                tool_config["toolChoice"] = {"auto": {}}
            payload["toolConfig"] = tool_config
        kind, schema, name = c.response_format(body)
        if kind == "json_object":
            raise c.unsupported(self.kind, "response_format", "response_format 'json_object' (use 'json_schema')")
        if schema is not None:
            payload["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
                "schema": orjson.dumps(schema).decode(), "name": name or "response"}}}}
        self._claude_fields(body, payload, deployment)
        guardrail = deployment.options.get("guardrail")
        if guardrail:
            # streamProcessingMode is a ConverseStream field; Converse refuses it.
            payload["guardrailConfig"] = guardrail if stream else {
                k: v for k, v in guardrail.items() if k != "streamProcessingMode"}
        return payload

    @staticmethod
    def _claude_fields(body: dict[str, Any], payload: dict[str, Any], deployment: Deployment) -> None:
        """Claude's own fields through Converse: extended thinking (see providers/reasoning.py), effort and beta
        features, in additionalModelRequestFields; other models skip them."""
        if not _is_claude(deployment):
            return
        if (payload.get("inferenceConfig") or {}).get("stopSequences"):
            # Which one stopped it, if one did. Converse answers from Claude's stream events, so the field is the
            # message_delta's, in plain answers too (as the Vercel AI SDK found against the live API).
            payload["additionalModelResponseFieldPaths"] = ["/delta/stop_sequence"]
        forced = next(iter((payload.get("toolConfig") or {}).get("toolChoice") or {}), "auto") != "auto"
        config = payload.get("inferenceConfig") or {}
        given = config.get("maxTokens")
        thinking, max_tokens = thinking_for(body, given or DEFAULT_MAX_TOKENS, bool(given))
        fields: dict[str, Any] = {}
        if body.get("effort") in CLAUDE_EFFORTS:
            fields["output_config"] = {"effort": body["effort"]}
        if isinstance(body.get("anthropic_beta"), list) and body["anthropic_beta"]:
            fields["anthropic_beta"] = body["anthropic_beta"]  # Claude's beta features, as its native body takes them
        if fields:
            payload["additionalModelRequestFields"] = fields
        if thinking is None or forced:  # Claude does not think while a tool is forced
            return
        payload.setdefault("additionalModelRequestFields", {})["thinking"] = thinking
        payload["inferenceConfig"] = config
        config["maxTokens"] = max_tokens
        drop_sampling(config, "temperature", "topP")

    def _blocks(self, msg: dict[str, Any], i: int, images: dict[str, c.Image], names: set[str],
                offers_tools: bool) -> list[dict[str, Any]]:
        """A message's Converse blocks. Bedrock refuses toolUse/toolResult blocks in a request that offers no
        tools (none given, or tool_choice "none"), so there a history's tool calls and results are written as
        text, and the model cannot call a tool."""
        content = msg.get("content")
        if msg["role"] == "tool" and not offers_tools:
            value = c.tool_result_value(content)
            text = orjson.dumps(value).decode() if isinstance(value, dict) else c.content_text(content)
            return [{"text": f"[result of tool call {msg['tool_call_id']}]\n{text}"}]
        if msg["role"] == "tool":
            value = c.tool_result_value(content)
            result = [{"json": value}] if isinstance(value, dict) else [{"text": c.content_text(content) or " "}]
            marked = next((p for p in content if _marked(p)), None) if isinstance(content, list) else None
            block = {"toolResult": {"toolUseId": msg["tool_call_id"], "content": result}}
            return [block, _cache_point(marked)] if marked else [block]
        blocks: list[dict[str, Any]] = [_reasoning_block(b) for b in anthropic_blocks(msg)]
        if isinstance(content, str):
            if content.strip():
                blocks.append({"text": content})
        elif isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type")
                if kind == "text":
                    if part["text"].strip():
                        blocks.append({"text": part["text"]})
                    if _marked(part) and blocks:
                        blocks.append(_cache_point(part))
                elif kind == "image_url":
                    image = images[part["image_url"]["url"]]
                    fmt = IMAGE_FORMATS.get(image.mime)
                    if fmt is None:
                        raise c.unsupported(self.kind, f"messages[{i}].content[{j}].image_url",
                                            f"image type {image.mime!r} (png, jpeg, gif and webp only)")
                    blocks.append({"image": {"format": fmt, "source": {"bytes": image.b64}}})
                    if _marked(part):
                        blocks.append(_cache_point(part))
                elif kind == "file":
                    doc = document_of(part, f"messages[{i}].content[{j}]", self.kind)
                    blocks.append({"document": {"format": EXTENSIONS[doc.mime],
                                                "name": _document_name(doc.filename, names),
                                                "source": {"bytes": doc.b64}}})
                    if _marked(part):
                        blocks.append(_cache_point(part))
                elif kind != "refusal":
                    raise c.unsupported(self.kind, f"messages[{i}].content[{j}].type", f"content part {kind!r}")
        for k, call in enumerate(msg.get("tool_calls") or ()):
            name, arguments = call["function"]["name"], c.tool_arguments(call, f"messages[{i}].tool_calls[{k}]")
            if offers_tools:
                blocks.append({"toolUse": {"toolUseId": call["id"], "name": name, "input": arguments}})
            else:
                blocks.append({"text": f"[tool call {call['id']}: {name} {orjson.dumps(arguments).decode()}]"})
        return blocks

    def _inference_config(self, body: dict[str, Any], stops: list[str]) -> dict[str, Any]:
        config: dict[str, Any] = {}
        limit = c.max_tokens(body)
        if limit is not None:
            config["maxTokens"] = limit
        temperature = body.get("temperature")
        if temperature is not None:
            if temperature > 1:
                raise c.unsupported(self.kind, "temperature", "'temperature' above 1 (Bedrock accepts 0 to 1)")
            config["temperature"] = temperature
        if body.get("top_p") is not None:
            config["topP"] = body["top_p"]
        if stops:
            config["stopSequences"] = stops
        return config

    # ------------------------------------------------------------ calls

    async def chat(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        stops = self.stop_plan(request, deployment)
        payload = orjson.dumps(await self.payload(request, deployment, stops))
        response = await self.send(deployment, "converse", payload, "application/json")
        raw = await read_body(response, deployment)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream sent invalid JSON") from None
        try:
            output = ((data.get("output") or {}).get("message") or {}) if isinstance(data, dict) else {}
            if not isinstance(output.get("content"), list):
                raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not a Converse response")
            text: list[str] = []
            calls: list[dict[str, Any]] = []
            thinking: list[dict[str, Any]] = []
            for block in output["content"]:
                if isinstance(block.get("text"), str):
                    text.append(block["text"])
                elif isinstance(block.get("reasoningContent"), dict):
                    thinking.append(_thinking_block(block["reasoningContent"]))
                elif isinstance(block.get("toolUse"), dict):
                    use = block["toolUse"]
                    calls.append(c.tool_call(use.get("toolUseId") or c.call_id(), use.get("name", ""),
                                             use.get("input") or {}))
            finish = STOP_REASONS.get(data.get("stopReason") or "end_turn", "stop")
            message = c.message("".join(text), calls)
            if thinking:
                message["reasoning_content"] = "".join(b.get("thinking", "") for b in thinking)
                message["thinking_blocks"] = thinking
            result = c.completion(c.completion_id(), deployment.upstream_model, [(message, finish)],
                                  bedrock_usage(data.get("usage")))
            _note_stop_sequence(result["choices"][0], data)
            return stops.cut(result)
        except MALFORMED as exc:
            raise malformed_answer(deployment, exc) from None

    async def stream_chunks(self, request: ChatRequest, deployment: Deployment, stops: StopPlan) -> Chunks:
        payload = orjson.dumps(await self.payload(request, deployment, stops, stream=True))
        response = await self.send(deployment, "converse-stream", payload, "application/vnd.amazon.eventstream")
        from botocore.eventstream import EventStreamBuffer, ParserError

        writer = c.ChunkWriter(deployment.upstream_model)
        frames = EventStreamBuffer()
        tools: dict[int, int] = {}  # Bedrock content block index -> OpenAI tool call position
        thinking: dict[int, dict[str, Any]] = {}  # content block index -> the thinking block so far
        started = stopped = False
        try:
            async for raw in iter_body(response, deployment):
                frames.add_data(raw)
                try:
                    messages = list(frames)
                except ParserError as exc:
                    raise UpstreamError(errors.SERVER, f"{deployment.id}: corrupt event stream: {exc}") from None
                for message in messages:
                    headers = message.headers
                    try:
                        event = orjson.loads(message.payload) if message.payload else {}
                    except orjson.JSONDecodeError:
                        raise UpstreamError(errors.SERVER, f"{deployment.id}: invalid JSON in event stream") from None
                    kind = headers.get(":message-type", "event")
                    if kind != "event":
                        name = headers.get(":exception-type") or headers.get(":error-code") or "InternalServerException"
                        text = event.get("message") or event.get("Message") or headers.get(":error-message") or name
                        raise bedrock_error(name, 500, str(text), deployment)
                    name = headers.get(":event-type")
                    if not started and name in ("messageStart", "contentBlockStart", "contentBlockDelta"):
                        started = True
                        yield writer.role()
                    if name == "contentBlockStart":
                        use = (event.get("start") or {}).get("toolUse")
                        if isinstance(use, dict):
                            position = len(tools)
                            tools[event.get("contentBlockIndex", 0)] = position
                            yield writer.tool_start(position, use.get("toolUseId") or c.call_id(), use.get("name", ""))
                    elif name == "contentBlockDelta":
                        delta = event.get("delta") or {}
                        if isinstance(delta.get("text"), str) and delta["text"]:
                            yield writer.text(delta["text"])
                        elif isinstance(delta.get("toolUse"), dict):
                            position = tools.get(event.get("contentBlockIndex", 0))
                            if position is not None:
                                yield writer.tool_arguments(position, delta["toolUse"].get("input", ""))
                        elif isinstance(delta.get("reasoningContent"), dict):
                            reasoning = delta["reasoningContent"]
                            if "redactedContent" in reasoning:
                                yield writer.delta({"thinking_blocks": [_thinking_block(reasoning)]})
                                continue
                            block = thinking.setdefault(event.get("contentBlockIndex", 0),
                                                        {"type": "thinking", "thinking": "", "signature": ""})
                            block["signature"] += reasoning.get("signature") or ""
                            if reasoning.get("text"):
                                block["thinking"] += reasoning["text"]
                                yield writer.delta({"reasoning_content": reasoning["text"]})
                    elif name == "contentBlockStop" and event.get("contentBlockIndex", 0) in thinking:
                        yield writer.delta({"thinking_blocks": [thinking.pop(event.get("contentBlockIndex", 0))]})
                    elif name == "messageStop":
                        stopped = True
                        chunk = writer.finish(STOP_REASONS.get(event.get("stopReason") or "end_turn", "stop"))
                        _note_stop_sequence(chunk["choices"][0], event)
                        yield chunk
                    elif name == "metadata":
                        usage = bedrock_usage(event.get("usage"))
                        if usage is not None:
                            yield writer.usage(usage)
            if not stopped:
                raise UpstreamError(errors.CONNECTION, f"{deployment.id}: stream ended before messageStop")
        except MALFORMED as exc:
            raise malformed_answer(deployment, exc) from None
        finally:
            response.release()

    # ------------------------------------------------------------ errors

    def error_from_response(self, status: int, body: bytes, headers: dict[str, str], deployment: Deployment) -> UpstreamError:
        name = headers.get("x-amzn-errortype", "").split(":", 1)[0]
        message = ""
        try:
            data = orjson.loads(body)
            if isinstance(data, dict):
                message = str(data.get("message") or data.get("Message") or "")
                name = name or str(data.get("__type", "")).rsplit("#", 1)[-1]
        except orjson.JSONDecodeError:
            message = body[:300].decode("utf-8", "replace")
        return bedrock_error(name, status, message or f"upstream returned HTTP {status}", deployment,
                             retry_after(headers))


def bedrock_error(name: str, status: int, message: str, deployment: Deployment,
                  retry_seconds: float | None = None) -> UpstreamError:
    """An `UpstreamError` for a Bedrock error type (an HTTP error or a stream exception frame)."""
    key = name.lower()
    kind = ERROR_KINDS.get(key)
    lower = message.lower()
    if key == "validationexception" or kind is None:
        if any(s in lower for s in _TOO_LONG):
            kind = errors.CONTEXT_LENGTH
        elif "content filter" in lower or "blocked" in lower and "content" in lower:
            kind = errors.CONTENT_POLICY
        elif key == "validationexception":
            kind = errors.BAD_REQUEST
        else:
            kind = errors.kind_for_status(status, message)
    label = f"{name}: " if name else ""
    return UpstreamError(kind, f"{deployment.id}: {label}{message}", upstream_status=status, retry_after=retry_seconds)


def bedrock_usage(usage: Any) -> dict[str, Any] | None:
    """OpenAI usage from Converse `usage`: inputTokens excludes cache reads and writes, prompt_tokens includes them."""
    if not isinstance(usage, dict) or "inputTokens" not in usage:
        return None
    cached, written = int(usage.get("cacheReadInputTokens") or 0), int(usage.get("cacheWriteInputTokens") or 0)
    prompt = int(usage.get("inputTokens") or 0) + cached + written
    hour = sum(int(d.get("inputTokens") or 0) for d in usage.get("cacheDetails") or ()
               if isinstance(d, dict) and d.get("ttl") == "1h")
    return c.usage(prompt, int(usage.get("outputTokens") or 0), cached=cached, cache_write=written,
                   cache_write_1h=min(hour, written))


def _reasoning_block(block: dict[str, Any]) -> dict[str, Any]:
    """A signed thinking block (Anthropic's shape) as Converse's reasoningContent."""
    if block["type"] == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": block["data"]}}
    return {"reasoningContent": {"reasoningText": {"text": block["thinking"], "signature": block["signature"]}}}


def _note_stop_sequence(choice: dict[str, Any], answer: dict[str, Any]) -> None:
    """The stop sequence that ended a Claude answer, which Converse returns when asked for `/delta/stop_sequence`."""
    fields = answer.get("additionalModelResponseFields")
    delta = fields.get("delta") if isinstance(fields, dict) else None
    if isinstance(delta, dict) and isinstance(delta.get("stop_sequence"), str):
        choice["stop_sequence"] = delta["stop_sequence"]


def _thinking_block(reasoning: dict[str, Any]) -> dict[str, Any]:
    """Converse's reasoningContent as a `thinking_blocks` entry."""
    if "redactedContent" in reasoning:
        return {"type": "redacted_thinking", "data": str(reasoning["redactedContent"])}
    text = reasoning.get("reasoningText") or {}
    return {"type": "thinking", "thinking": text.get("text") or "", "signature": text.get("signature") or ""}


def _marked(item: Any) -> bool:
    """A content part or tool with an Anthropic-style prompt-cache breakpoint (`cache_control`)."""
    return isinstance(item, dict) and isinstance(item.get("cache_control"), dict)


def _cache_point(item: dict[str, Any]) -> dict[str, Any]:
    """The `cachePoint` block for a marked part or tool, with the mark's `ttl` ('5m' or '1h') when it has one."""
    ttl = item["cache_control"].get("ttl")
    return {"cachePoint": {"type": "default", **({"ttl": ttl} if ttl is not None else {})}}


def _tool_spec(fn: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": fn["name"], "inputSchema": {"json": fn.get("parameters") or {"type": "object",
                                                                                                  "properties": {}}}}
    if fn.get("description"):
        spec["description"] = fn["description"]
    return {"toolSpec": spec}


def sign(signer: Any, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """Headers with SigV4 auth added by botocore.

    The host signed is the one our HTTP client sends (`host_header`: with the port when it is not the default).
    """
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=url, data=body, headers={**headers, "host": host_header(url)})
    signer.add_auth(request)
    return {k.lower(): v for k, v in request.headers.items() if k.lower() != "host"}
