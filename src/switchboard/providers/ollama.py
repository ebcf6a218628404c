"""Ollama's native API: `POST /api/chat` (NDJSON streams) and `POST /api/embed`.

Ollama also serves the OpenAI format under `/v1` (use provider `openai` for
that); the native API is what older servers and some features need. It
differs in small ways that all matter: Ollama streams unless told
`stream: false`, sampling goes in `options` (`num_predict` for max tokens),
images are a list of bare base64 strings on the message, tool call arguments
are objects and tool results name the tool, JSON mode is `format: "json"` or a
JSON schema, and usage is `prompt_eval_count` / `eval_count`.
Ollama cannot force a tool call, so `tool_choice` "required" or a named
function is refused with a 400 rather than silently ignored. Ollama documents no
limit on the number of stop sequences (`options.stop`).
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard import errors
from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import UpstreamError
from switchboard.providers import canonical as c
from switchboard.providers.base import MALFORMED, Provider, iter_body, malformed_answer
from switchboard.providers.documents import document_of, inlined
from switchboard.providers.local_stops import Chunks, StopPlan

DONE_REASONS = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}


class OllamaProvider(Provider):
    kind = "ollama"

    async def payload(self, request: ChatRequest, deployment: Deployment, stream: bool,
                      stops: StopPlan) -> dict[str, Any]:
        body = request.body
        c.single_choice(self.kind, body)
        c.openai_only(self.kind, body)
        c.no_logprobs(self.kind, body)
        images = await c.load_images(request, deployment, self.client)
        names = c.tool_names_by_id(body["messages"])
        messages = [self._message(msg, i, images, names) for i, msg in enumerate(body["messages"])]
        payload: dict[str, Any] = {"model": deployment.upstream_model, "messages": messages, "stream": stream}
        tools = body.get("tools")
        mode, _ = c.tool_choice(body)
        if tools and mode in ("required", "function"):
            raise c.unsupported(self.kind, "tool_choice", "forcing a tool call with tool_choice")
        if tools and mode != "none":
            payload["tools"] = [{"type": "function", "function": t["function"]} for t in tools]
        options: dict[str, Any] = {}
        for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed"),
                             ("presence_penalty", "presence_penalty"), ("frequency_penalty", "frequency_penalty")):
            if body.get(ours) is not None:
                options[theirs] = body[ours]
        limit = c.max_tokens(body)
        if limit is not None:
            options["num_predict"] = limit
        if stops.upstream:
            options["stop"] = stops.upstream
        if options:
            payload["options"] = options
        kind, schema, _ = c.response_format(body)
        if kind == "json_object":
            payload["format"] = "json"
        elif schema is not None:
            payload["format"] = schema
        extra = deployment.options.get("keep_alive")
        if extra is not None:
            payload["keep_alive"] = extra
        return payload

    def _message(self, msg: dict[str, Any], i: int, images: dict[str, c.Image],
                 names: dict[str, str]) -> dict[str, Any]:
        role = msg["role"]
        content = msg.get("content")
        out: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": c.content_text(content)}
        if role == "tool":
            name = names.get(msg["tool_call_id"]) or msg.get("name")
            if name:
                out["tool_name"] = name
            return out
        if isinstance(content, list):
            pictures: list[str] = []
            texts: list[tuple[str, bool]] = []  # (text, whether it is a file's)
            for j, part in enumerate(content):
                kind = part.get("type")
                if kind == "image_url":
                    pictures.append(images[part["image_url"]["url"]].b64)
                elif kind == "text" and isinstance(part.get("text"), str):
                    texts.append((part["text"], False))
                elif kind == "file":
                    texts.append((self._text_file(part, f"messages[{i}].content[{j}]"), True))
                elif kind != "refusal":
                    raise c.unsupported(self.kind, f"messages[{i}].content[{j}].type", f"content part {kind!r}")
            out["content"] = _joined(texts)
            if pictures:
                out["images"] = pictures
        calls = msg.get("tool_calls")
        if calls:
            out["tool_calls"] = [{"function": {"name": call["function"]["name"],
                                               "arguments": c.tool_arguments(call, f"messages[{i}].tool_calls[{k}]")}}
                                 for k, call in enumerate(calls)]
        return out

    def _text_file(self, part: dict[str, Any], param: str) -> str:
        doc = document_of(part, param, self.kind)
        if not doc.is_text:
            raise c.unsupported(self.kind, f"{param}.file.file_data", "PDF documents (text files are sent as text)")
        return inlined(doc, f"{param}.file.file_data")

    # ------------------------------------------------------------ calls

    async def chat(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        stops = self.stop_plan(request, deployment)
        payload = await self.payload(request, deployment, False, stops)
        data = await self.send_json(deployment, deployment.base_url + "/api/chat", self.headers(deployment), payload)
        if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not an Ollama chat response")
        try:
            msg = data["message"]
            calls = [c.tool_call(call.get("id") or c.call_id(), (call.get("function") or {}).get("name", ""),
                                 (call.get("function") or {}).get("arguments") or {})
                     for call in msg.get("tool_calls") or ()]
            finish = "tool_calls" if calls else DONE_REASONS.get(data.get("done_reason") or "stop", "stop")
            return stops.cut(c.completion(c.completion_id(), deployment.upstream_model,
                                          [(c.message(msg.get("content") or "", calls), finish)], ollama_usage(data)))
        except MALFORMED as exc:
            raise malformed_answer(deployment, exc) from None

    async def stream_chunks(self, request: ChatRequest, deployment: Deployment, stops: StopPlan) -> Chunks:
        payload = await self.payload(request, deployment, True, stops)
        response = await self.open(deployment, "POST", deployment.base_url + "/api/chat", self.headers(deployment),
                                   orjson.dumps(payload))
        writer = c.ChunkWriter(deployment.upstream_model)
        buffer = b""
        started = done = False
        calls = 0
        try:
            async for raw in iter_body(response, deployment):
                buffer += raw
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        data = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        raise UpstreamError(errors.SERVER, f"{deployment.id}: invalid JSON line in stream") from None
                    if "error" in data:
                        raise UpstreamError(errors.kind_for_status(500, str(data["error"])),
                                            f"{deployment.id}: {data['error']}")
                    if not started:
                        started = True
                        yield writer.role()
                    msg = data.get("message") or {}
                    if msg.get("content"):
                        yield writer.text(msg["content"])
                    for call in msg.get("tool_calls") or ():
                        fn = call.get("function") or {}
                        yield writer.tool_start(calls, call.get("id") or c.call_id(), fn.get("name", ""),
                                                orjson.dumps(fn.get("arguments") or {}).decode())
                        calls += 1
                    if data.get("done"):
                        done = True
                        finish = "tool_calls" if calls else DONE_REASONS.get(data.get("done_reason") or "stop", "stop")
                        yield writer.finish(finish)
                        usage = ollama_usage(data)
                        if usage is not None:
                            yield writer.usage(usage)
            if not done:
                raise UpstreamError(errors.CONNECTION, f"{deployment.id}: stream ended before its done line")
        except MALFORMED as exc:
            raise malformed_answer(deployment, exc) from None
        finally:
            response.release()

    async def embeddings(self, body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
        inputs = body["input"]
        if not (isinstance(inputs, str) or all(isinstance(x, str) for x in inputs)):
            raise c.unsupported(self.kind, "input", "token-array input")
        payload: dict[str, Any] = {"model": deployment.upstream_model, "input": inputs}
        if body.get("dimensions"):
            payload["dimensions"] = body["dimensions"]
        data = await self.send_json(deployment, deployment.base_url + "/api/embed", self.headers(deployment), payload)
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list):
            raise UpstreamError(errors.SERVER, f"{deployment.id}: upstream answer is not an embeddings list")
        tokens = int(data.get("prompt_eval_count") or 0)
        return {"object": "list", "model": deployment.upstream_model,
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def error_from_response(self, status: int, body: bytes, headers: dict[str, str], deployment: Deployment) -> UpstreamError:
        error = super().error_from_response(status, body, headers, deployment)
        lower = error.message.lower()
        if status in (400, 500) and "context" in lower and ("length" in lower or "window" in lower) \
                or "prompt too long" in lower:
            return UpstreamError(errors.CONTEXT_LENGTH, error.message, upstream_status=status)
        if status == 500 and ("server busy" in lower or "maximum pending" in lower):
            return UpstreamError(errors.OVERLOADED, error.message, upstream_status=status)
        return error


def _joined(texts: list[tuple[str, bool]]) -> str:
    """A message's text parts joined end to end (as `content_text` joins them), each file's a paragraph of its own."""
    out, after_file = "", False
    for text, is_file in texts:
        if out and (is_file or after_file):
            out += "\n\n"
        out, after_file = out + text, is_file
    return out


def ollama_usage(data: dict[str, Any]) -> dict[str, Any] | None:
    if "prompt_eval_count" not in data and "eval_count" not in data:
        return None
    return c.usage(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))
