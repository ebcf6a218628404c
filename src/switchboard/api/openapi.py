"""The OpenAPI 3.1 document of the gateway's endpoints, served at /openapi.json."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchboard import __version__
from switchboard.core.request import MAX_STOP_LENGTH, MAX_STOPS

if TYPE_CHECKING:
    from switchboard.app import Gateway

_STOP_SCHEMA = {"oneOf": [{"type": "string", "maxLength": MAX_STOP_LENGTH},
                          {"type": "array", "items": {"type": "string", "maxLength": MAX_STOP_LENGTH},
                           "maxItems": MAX_STOPS}]}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}

_CONTENT_PART = {
    "oneOf": [
        {"type": "object", "required": ["type", "text"], "properties": {
            "type": {"const": "text"}, "text": {"type": "string"}}},
        {"type": "object", "required": ["type", "image_url"], "properties": {
            "type": {"const": "image_url"},
            "image_url": {"type": "object", "required": ["url"], "properties": {
                "url": {"type": "string"}, "detail": {"enum": ["auto", "low", "high"]}}}}},
        {"type": "object", "required": ["type", "file"], "properties": {
            "type": {"const": "file"},
            "file": {"type": "object", "properties": {  # file_data: data:application/pdf;base64,...
                "file_data": {"type": "string"}, "file_id": {"type": "string"}, "filename": {"type": "string"}}}}},
    ]
}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_PART}, {"type": "null"}]},
        "name": {"type": "string"},
        "tool_call_id": {"type": "string"},
        "tool_calls": {"type": "array", "items": {"type": "object"}},
    },
}

_CHAT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "description": "A configured model name, or a router such as `auto`."},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 128},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "stop": _STOP_SCHEMA,
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "seed": {"type": "integer"},
        "user": {"type": "string"},
        "tools": {"type": "array", "items": {"type": "object", "required": ["type", "function"], "properties": {
            "type": {"const": "function"},
            "function": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "parameters": {"type": "object"}}}}}},
        "tool_choice": {"oneOf": [{"enum": ["none", "auto", "required"]}, {"type": "object"}]},
        "response_format": {"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["text", "json_object", "json_schema"]}, "json_schema": {"type": "object"}}},
    },
    "additionalProperties": True,
}

_CHAT_RESPONSE = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
    },
}

_COMPLETION_REQUEST = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {
        "model": {"type": "string"},
        "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                                  "maxItems": 1}]},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 1},
        "stream": {"type": "boolean"},
        "stop": _STOP_SCHEMA,
        "logprobs": {"type": "integer", "minimum": 0, "maximum": 5},
        "seed": {"type": "integer"},
        "user": {"type": "string"},
    },
    "additionalProperties": True,
}

_EMBEDDINGS_REQUEST = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": {"type": "string"},
        "input": {"oneOf": [  # a text, texts, one prompt's tokens, or several prompts' tokens (as OpenAI takes)
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 2048},
            {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2048},
            {"type": "array", "items": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
             "minItems": 1, "maxItems": 2048}]},
        "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1},
        "user": {"type": "string"},
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    desc = {400: "Invalid request", 401: "Missing or wrong API key", 402: "Credit exhausted",
            403: "Not allowed", 404: "Unknown model or path", 413: "Body too large", 429: "Rate limited",
            502: "Upstream failure", 503: "No deployment available", 504: "Upstream timeout"}
    return {str(c): {"description": desc[c], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for c in codes}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def document(gw: Gateway | None = None) -> dict[str, Any]:
    security = [{"bearer": []}]
    paths: dict[str, Any] = {
        "/v1/chat/completions": {"post": {
            "operationId": "createChatCompletion", "summary": "Chat completion (JSON or SSE stream), OpenAI format",
            "security": security,
            "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/ChatCompletionRequest"})},
            "responses": {"200": {"description": "A chat completion, or an SSE stream of chunks when stream=true",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
                                              "text/event-stream": {"schema": {"type": "string"}}}},
                          **_errors(400, 401, 402, 403, 404, 413, 429, 502, 503, 504)}}},
        "/v1/completions": {"post": {
            "operationId": "createCompletion",
            "summary": "Legacy text completion (JSON or SSE stream), OpenAI format, served as a one-message chat",
            "security": security,
            "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/CompletionRequest"})},
            "responses": {"200": {"description": "A text_completion, or an SSE stream of them when stream=true",
                                  "content": {"application/json": {"schema": {"type": "object"}},
                                              "text/event-stream": {"schema": {"type": "string"}}}},
                          **_errors(400, 401, 402, 403, 404, 413, 429, 502, 503, 504)}}},
        "/v1/embeddings": {"post": {
            "operationId": "createEmbedding", "summary": "Embeddings, OpenAI format", "security": security,
            "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/EmbeddingsRequest"})},
            "responses": {"200": {"description": "Embeddings", **_json({"type": "object"})},
                          **_errors(400, 401, 402, 403, 404, 413, 429, 502, 503, 504)}}},
        "/v1/models": {"get": {
            "operationId": "listModels", "summary": "Models and routers clients may call", "security": security,
            "responses": {"200": {"description": "The model list", **_json({"type": "object", "required": ["object", "data"]})},
                          **_errors(401)}}},
        "/v1/models/{model}": {"get": {
            "operationId": "retrieveModel", "summary": "One model", "security": security,
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The model", **_json({"type": "object"})}, **_errors(401, 404)}}},
        "/health": {"get": {"operationId": "health", "summary": "Liveness",
                            "responses": {"200": {"description": "The process is up", **_json({"type": "object"})}}}},
        "/ready": {"get": {"operationId": "ready", "summary": "Readiness: config loaded and storage reachable",
                           "responses": {"200": {"description": "Ready", **_json({"type": "object"})},
                                         "503": {"description": "Not ready", **_json({"type": "object"})}}}},
    }
    from switchboard.api.anthropic import openapi_paths as anthropic_paths
    from switchboard.api.responses import openapi_paths as responses_paths

    paths.update(anthropic_paths())
    paths.update(responses_paths())
    if gw is not None:
        for extra in getattr(gw, "openapi_extensions", ()):
            extra(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchboard LLM gateway", "version": __version__,
                 "description": "OpenAI-compatible (and Anthropic-compatible) gateway in front of many models."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR, "ChatCompletionRequest": _CHAT_REQUEST, "ChatCompletion": _CHAT_RESPONSE,
                        "CompletionRequest": _COMPLETION_REQUEST, "EmbeddingsRequest": _EMBEDDINGS_REQUEST},
        },
    }
