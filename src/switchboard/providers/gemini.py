"""Google Gemini (Generative Language API) adapter: `models/{model}:generateContent`.

Gemini's shapes differ from OpenAI's everywhere: `contents` of `parts` with
roles user/model, the system prompt in `systemInstruction`, sampling in
`generationConfig`, tools as `functionDeclarations` whose calls carry
arguments as objects and whose results come back as `functionResponse` parts
naming the function (not the call id). Images must be inline, so URLs are
fetched here; files (PDF, text) go inline too. A blocked prompt is not an HTTP error but a 200 with
`promptFeedback.blockReason`; we raise it as a content-policy failure so the
content-policy fallback chain can act. Streams are SSE (`alt=sse`) of whole
`GenerateContentResponse` objects.

Thought signatures: Gemini 3 signs the reasoning behind a function call
(`thoughtSignature` on the part) and rejects a later request whose history
carries the call without it. Answers put it where Google's own OpenAI
endpoint does, `tool_calls[i].extra_content.google.thought_signature`, and
requests send it back from there; a call that has none (a client that drops
the field, an Anthropic-format client, a history another model wrote) gets
Google's documented placeholder on the first call of its step, for models
past 2.x, so the request is not refused.

Reasoning: `reasoning_effort` (or Anthropic's `thinking`, by the effort its budget
fits) becomes `thinkingConfig` (a `thinkingBudget` for 2.x models, a
`thinkingLevel` for later ones) with thought summaries included, which come back
as `reasoning_content` (`delta.reasoning_content` in streams).

Stop sequences: Gemini takes at most 5 (`stopSequences`); the gateway applies the others
itself (`providers.local_stops`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson

from switchboard import errors
from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import UpstreamError
from switchboard.providers import canonical as c
from switchboard.providers.base import MALFORMED, Provider, malformed_answer, sse_json
from switchboard.providers.documents import document_of
from switchboard.providers.local_stops import Chunks, StopLimits, StopPlan
from switchboard.providers.reasoning import effort_for

FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "LANGUAGE": "stop", "OTHER": "stop", "MALFORMED_FUNCTION_CALL": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}

# The OpenAPI-subset `Schema` Gemini accepts for parameters and responseSchema; anything else is rejected upstream.
_SCHEMA_KEYS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                          "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                          "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"})
# The `format`s Gemini's Schema takes, by type; any other (JSON Schema's "uri", "email", ...) is a 400 upstream.
_FORMATS = {"STRING": frozenset({"enum", "date-time"}), "INTEGER": frozenset({"int32", "int64"}),
           "NUMBER": frozenset({"float", "double"})}
_CALLING_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}
_RETRY_DELAY = re.compile(r"^([0-9.]+)s$")
# Google's documented value for a function call whose signature is unknown; 1.x/2.x models do not require one.
SKIP_SIGNATURE = "skip_thought_signature_validator"
_UNSIGNED_MODELS = re.compile(r"^(models/)?gemini-[12]\.")
_BUDGET_MODELS = re.compile(r"^(models/)?gemini-2\.")  # think by token budget; later models by level
_PRE_THINKING_MODELS = re.compile(r"^(models/)?gemini-1\.")
# `reasoning_effort` as Google's own OpenAI endpoint maps it: a budget for 2.x, a level for 3 and later.
_THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
_EFFORT_STEPS = {e: _THINKING_BUDGETS[e] for e in ("low", "medium", "high")}  # Anthropic's budget -> an effort
_THINKING_LEVELS = {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium", "high": "high",
                    "xhigh": "high"}
_GEMINI_STOPS = StopLimits(most=5)  # GenerationConfig.stopSequences: "The set of character sequences (up to 5)"


class GeminiProvider(Provider):
    kind = "gemini"

    def url(self, deployment: Deployment, method: str) -> str:
        version = deployment.options.get("api_version") or "v1beta"
        return f"{deployment.base_url}/{version}/models/{quote(deployment.upstream_model, safe='')}:{method}"

    def headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if deployment.api_key is not None:
            headers["x-goog-api-key"] = deployment.api_key.reveal()
        extra = deployment.options.get("headers")
        if extra:
            headers.update(extra)
        return headers

    # ------------------------------------------------------------ request

    def stop_limits(self, deployment: Deployment) -> StopLimits:
        return _GEMINI_STOPS

    async def payload(self, request: ChatRequest, deployment: Deployment, stops: StopPlan) -> dict[str, Any]:
        body = request.body
        c.openai_only(self.kind, body)
        images = await c.load_images(request, deployment, self.client)
        names = c.tool_names_by_id(body["messages"])
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        for i, msg in enumerate(body["messages"]):
            role = msg["role"]
            if role in ("system", "developer"):
                text = c.content_text(msg.get("content"))
                if text:
                    system.append({"text": text})
                continue
            parts = self._parts(msg, i, images, names, not _UNSIGNED_MODELS.match(deployment.upstream_model))
            if not parts:
                continue
            gemini_role = "model" if role == "assistant" else "user"
            if contents and contents[-1]["role"] == gemini_role:
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": gemini_role, "parts": parts})
        payload: dict[str, Any] = {"contents": contents}
        if system:
            payload["systemInstruction"] = {"parts": system}
        config = self._generation_config(body, stops.upstream)
        effort = body.get("reasoning_effort") or effort_for(body, _EFFORT_STEPS, "xhigh", "none")
        thinking = _thinking_config(effort, deployment.upstream_model)
        if thinking is not None:
            config["thinkingConfig"] = thinking
        if config:
            payload["generationConfig"] = config
        tools = body.get("tools")
        mode, forced = c.tool_choice(body)
        if tools:
            payload["tools"] = [{"functionDeclarations": [_declaration(t["function"]) for t in tools]}]
            calling: dict[str, Any] = {"mode": _CALLING_MODES.get(mode, "AUTO")}
            if forced:
                calling["allowedFunctionNames"] = [forced]
            payload["toolConfig"] = {"functionCallingConfig": calling}
        return payload

    def _parts(self, msg: dict[str, Any], i: int, images: dict[str, c.Image],
               names: dict[str, str], signed: bool) -> list[dict[str, Any]]:
        role = msg["role"]
        content = msg.get("content")
        if role == "tool":
            name = names.get(msg["tool_call_id"]) or msg.get("name") or msg["tool_call_id"]
            value = c.tool_result_value(content)
            return [{"functionResponse": {"name": name,
                                          "response": value if isinstance(value, dict) else {"result": value}}}]
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            if content:
                parts.append({"text": content})
        elif isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type")
                if kind == "text" and part["text"]:
                    parts.append({"text": part["text"]})
                elif kind == "image_url":
                    image = images[part["image_url"]["url"]]
                    parts.append({"inlineData": {"mimeType": image.mime, "data": image.b64}})
                elif kind == "file":
                    doc = document_of(part, f"messages[{i}].content[{j}]", self.kind)
                    parts.append({"inlineData": {"mimeType": doc.mime, "data": doc.b64}})
                elif kind not in ("text", "refusal"):
                    raise c.unsupported(self.kind, f"messages[{i}].content[{j}].type", f"content part {kind!r}")
        for k, call in enumerate(msg.get("tool_calls") or ()):
            args = c.tool_arguments(call, f"messages[{i}].tool_calls[{k}]")
            part: dict[str, Any] = {"functionCall": {"name": call["function"]["name"], "args": args}}
            signature = _signature_of(call) or (SKIP_SIGNATURE if signed and k == 0 else None)
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
        return parts

    def _generation_config(self, body: dict[str, Any], stops: list[str]) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("presence_penalty", "presencePenalty"),
                             ("frequency_penalty", "frequencyPenalty"), ("seed", "seed"), ("n", "candidateCount")):
            if body.get(ours) is not None:
                config[theirs] = body[ours]
        if body.get("logprobs"):
            config["responseLogprobs"] = True
            if body.get("top_logprobs"):
                config["logprobs"] = body["top_logprobs"]
        limit = c.max_tokens(body)
        if limit is not None:
            config["maxOutputTokens"] = limit
        if stops:
            config["stopSequences"] = stops
        kind, schema, _ = c.response_format(body)
        if kind in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
        if schema is not None:
            config["responseSchema"] = gemini_schema(schema)
        return config

    # ------------------------------------------------------------ calls

    async def chat(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        stops = self.stop_plan(request, deployment)
        payload = await self.payload(request, deployment, stops)
        data = await self.send_json(deployment, self.url(deployment, "generateContent"), self.headers(deployment), payload)
        if not isinstance(data, dict):
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not a GenerateContentResponse")
        try:
            check_prompt_blocked(data, deployment)
            choices = []
            candidates = sorted(data.get("candidates") or [], key=lambda x: x.get("index", 0))
            for cand in candidates:
                text, calls, thoughts = _candidate_output(cand)
                finish = FINISH_REASONS.get(cand.get("finishReason") or "STOP", "stop")
                if calls and finish == "stop":
                    finish = "tool_calls"
                message = c.message(text, calls)
                if thoughts:
                    message["reasoning_content"] = thoughts
                choices.append((message, finish))
            if not choices:
                raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer has no candidates")
            cid = "chatcmpl-" + data["responseId"] if isinstance(data.get("responseId"), str) else c.completion_id()
            result = c.completion(cid, deployment.upstream_model, choices, gemini_usage(data.get("usageMetadata")))
            for choice, cand in zip(result["choices"], candidates):
                choice["logprobs"] = openai_logprobs(cand.get("logprobsResult"))
            return stops.cut(result)
        except MALFORMED as exc:
            raise malformed_answer(deployment, exc) from None

    async def stream_chunks(self, request: ChatRequest, deployment: Deployment, stops: StopPlan) -> Chunks:
        payload = await self.payload(request, deployment, stops)
        response = await self.open(deployment, "POST", self.url(deployment, "streamGenerateContent") + "?alt=sse",
                                   self.headers(deployment), orjson.dumps(payload))
        writer = c.ChunkWriter(deployment.upstream_model)
        started: set[int] = set()
        finished: set[int] = set()
        tool_positions: dict[int, int] = {}
        usage_meta: dict[str, Any] | None = None
        try:
            async for _event, event in sse_json(response, deployment):
                if "error" in event:
                    raise self.error_from_response(int((event["error"] or {}).get("code") or 500),
                                                   orjson.dumps(event), {}, deployment)
                check_prompt_blocked(event, deployment)
                if isinstance(event.get("usageMetadata"), dict):
                    usage_meta = event["usageMetadata"]
                for cand in event.get("candidates") or ():
                    index = cand.get("index", 0)
                    if index not in started:
                        started.add(index)
                        yield writer.role(index)
                    for part in (cand.get("content") or {}).get("parts") or ():
                        if "functionCall" in part:
                            call = part["functionCall"]
                            position = tool_positions.get(index, 0)
                            tool_positions[index] = position + 1
                            yield writer.tool_start(position, call.get("id") or c.call_id(), call.get("name", ""),
                                                    orjson.dumps(call.get("args") or {}).decode(), index,
                                                    _extra_content(part))
                        elif isinstance(part.get("text"), str) and part["text"]:
                            if part.get("thought"):
                                yield writer.delta({"reasoning_content": part["text"]}, index=index)
                                continue
                            chunk = writer.text(part["text"], index)
                            chunk["choices"][0]["logprobs"] = openai_logprobs(cand.pop("logprobsResult", None))
                            yield chunk
                    reason = cand.get("finishReason")
                    if reason:
                        finish = FINISH_REASONS.get(reason, "stop")
                        if finish == "stop" and tool_positions.get(index):
                            finish = "tool_calls"
                        finished.add(index)
                        yield writer.finish(finish, index)
            if not finished or started - finished:
                raise UpstreamError(errors.CONNECTION, f"{deployment.id}: stream ended before its finishReason")
        except MALFORMED as exc:
            raise malformed_answer(deployment, exc) from None
        finally:
            response.release()
        usage = gemini_usage(usage_meta)
        if usage is not None:
            yield writer.usage(usage)

    async def embeddings(self, body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        inputs = body["input"]
        items = [inputs] if isinstance(inputs, str) else inputs
        if not all(isinstance(x, str) for x in items):
            raise c.unsupported(self.kind, "input", "token-array input")
        model = "models/" + deployment.upstream_model
        requests = []
        for text in items:
            req: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if body.get("dimensions"):
                req["outputDimensionality"] = body["dimensions"]
            requests.append(req)
        data = await self.send_json(deployment, self.url(deployment, "batchEmbedContents"), self.headers(deployment),
                                    {"requests": requests})
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list) or len(vectors) != len(items):
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not an embeddings batch")
        from switchboard.accounting.tokens import estimate_tokens

        tokens = sum(estimate_tokens(t) for t in items)
        return {"object": "list", "model": deployment.upstream_model,
                "data": [{"object": "embedding", "index": i, "embedding": v.get("values", [])}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    # ------------------------------------------------------------ errors

    def error_from_response(self, status: int, body: bytes, headers: dict[str, str], deployment: Deployment) -> UpstreamError:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(data, list) and data and isinstance(data[0], dict):
            err = data[0].get("error")
        if not isinstance(err, dict):
            return super().error_from_response(status, body, headers, deployment)
        message = str(err.get("message") or f"upstream returned HTTP {status}")
        state = str(err.get("status") or "")
        details = err.get("details") if isinstance(err.get("details"), list) else []
        reasons = {d.get("reason") for d in details if isinstance(d, dict)}
        retry = None
        for d in details:
            if isinstance(d, dict) and isinstance(d.get("retryDelay"), str):
                m = _RETRY_DELAY.match(d["retryDelay"])
                retry = float(m.group(1)) if m else None
        lower = message.lower()
        if "API_KEY_INVALID" in reasons or "api key not valid" in lower or state in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            kind = errors.AUTH
        elif state == "RESOURCE_EXHAUSTED" or status == 429:
            kind = errors.RATE_LIMIT
        elif "token count" in lower and "exceeds" in lower or "exceeds the maximum number of tokens" in lower:
            kind = errors.CONTEXT_LENGTH
        elif state == "UNAVAILABLE":
            kind = errors.OVERLOADED
        elif state == "DEADLINE_EXCEEDED":
            kind = errors.TIMEOUT
        else:
            kind = errors.kind_for_status(status, message)
        return UpstreamError(kind, f"{deployment.id}: {message}", upstream_status=status, retry_after=retry)


def check_prompt_blocked(data: dict[str, Any], deployment: Deployment) -> None:
    feedback = data.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason") and not data.get("candidates"):
        raise UpstreamError(errors.CONTENT_POLICY,
                            f"{deployment.id}: the prompt was blocked by Gemini ({feedback['blockReason']})",
                            upstream_status=200)


def _candidate_output(cand: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str]:
    """(text, tool calls, thought summaries) of a candidate."""
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (cand.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            call = part["functionCall"]
            calls.append(c.tool_call(call.get("id") or c.call_id(), call.get("name", ""), call.get("args") or {},
                                     _extra_content(part)))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    return "".join(text), calls, "".join(thoughts)


def openai_logprobs(result: Any) -> dict[str, Any] | None:
    """A candidate's `logprobsResult` (chosen token and top candidates per step) as OpenAI's `logprobs`."""
    if not isinstance(result, dict) or not isinstance(result.get("chosenCandidates"), list):
        return None
    tops = result.get("topCandidates") or []

    def entry(candidate: Any) -> dict[str, Any]:
        candidate = candidate if isinstance(candidate, dict) else {}
        token = str(candidate.get("token") or "")
        return {"token": token, "logprob": float(candidate.get("logProbability") or 0.0), "bytes": list(token.encode())}

    content = []
    for i, chosen in enumerate(result["chosenCandidates"]):
        top = tops[i].get("candidates") if i < len(tops) and isinstance(tops[i], dict) else None
        content.append({**entry(chosen), "top_logprobs": [entry(t) for t in top or ()]})
    return {"content": content, "refusal": None}


def _thinking_config(effort: Any, model: str) -> dict[str, Any] | None:
    """`generationConfig.thinkingConfig` for a `reasoning_effort`, with thought summaries unless it is "none"."""
    if effort not in _THINKING_LEVELS or _PRE_THINKING_MODELS.match(model):
        return None
    config: dict[str, Any] = ({"thinkingBudget": _THINKING_BUDGETS[effort]} if _BUDGET_MODELS.match(model)
                              else {"thinkingLevel": _THINKING_LEVELS[effort]})
    if effort != "none":
        config["includeThoughts"] = True
    return config


def _extra_content(part: dict[str, Any]) -> dict[str, Any] | None:
    """A function call part's thought signature, as Google's OpenAI endpoint returns it on the tool call."""
    signature = part.get("thoughtSignature")
    return {"google": {"thought_signature": signature}} if isinstance(signature, str) and signature else None


def _signature_of(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def gemini_usage(meta: Any) -> dict[str, Any] | None:
    """OpenAI usage from `usageMetadata`: thoughts count as completion (reasoning) tokens, as OpenAI's do."""
    if not isinstance(meta, dict) or "promptTokenCount" not in meta:
        return None
    prompt = int(meta.get("promptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    cached = meta.get("cachedContentTokenCount")
    return c.usage(prompt, completion, cached=int(cached) if cached else 0, reasoning=thoughts)


def _declaration(fn: dict[str, Any]) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        decl["description"] = fn["description"]
    params = fn.get("parameters")
    if params and (params.get("properties") or params.get("type") not in (None, "object")):
        decl["parameters"] = gemini_schema(params)
    return decl


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema reduced to the OpenAPI subset Gemini accepts: $refs inlined, unknown keywords dropped."""
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _reduce(schema, defs, 0)


def _reduce(node: Any, defs: dict[str, Any], depth: int) -> Any:
    if not isinstance(node, dict):
        return node
    if depth > 24:
        return {"type": "object"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        merged = {**(target or {"type": "object"}), **{k: v for k, v in node.items() if k != "$ref"}}
        return _reduce(merged, defs, depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            kinds = [k for k in value if isinstance(k, str) and k != "null"]  # a schema's own error: Gemini says so
            out["type"] = (kinds[0] if kinds else "string").upper()
            if "null" in value:
                out["nullable"] = True
        elif key == "type" and isinstance(value, str):
            if value == "null":
                out["nullable"] = True
            else:
                out["type"] = value.upper()
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: _reduce(v, defs, depth + 1) for k, v in value.items()}
        elif key == "items":
            out["items"] = _reduce(value, defs, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            options = [_reduce(v, defs, depth + 1) for v in value]
            concrete = [o for o in options if o != {"nullable": True}]
            if len(concrete) == 1:
                out.update(concrete[0])
                if len(options) > 1:
                    out["nullable"] = True
            else:
                out["anyOf"] = concrete
        elif key == "enum" and isinstance(value, list):
            out["enum"] = [str(v) for v in value if v is not None]
        elif key in _SCHEMA_KEYS:
            out[key] = value
    if "enum" in out:
        out["type"] = "STRING"  # Gemini enums are string-typed only
    if "format" in out and out["format"] not in _FORMATS.get(out.get("type"), ()):
        del out["format"]  # a hint Gemini cannot take; the description still tells the model
    return out
