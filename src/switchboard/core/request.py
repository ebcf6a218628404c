"""The canonical chat request and its validation.

The canonical form of a chat request is the OpenAI chat-completions body: it is
the lingua franca every client SDK speaks, the OpenAI-compatible family of
providers takes it as is, and every other provider adapter translates from
it. `ChatRequest` wraps the validated body with what the pipeline needs to
know about it; unknown fields stay in the body and pass through.

Validation names the offending parameter the way OpenAI does
(``messages[2].role``) and runs on plain dicts: fast enough for the hot path.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.reasoning import CLAUDE_EFFORTS

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NUMBER = (int, float)
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "file"})
MAX_STOPS = 4  # OpenAI's limit on `stop`, which its ingresses keep; the Anthropic ingress takes more
# The longest stop sequence taken: the gateway may have to look for them itself, in every piece of a stream
# (`providers.local_stops`), and no provider documents a stop sequence anywhere near this long.
MAX_STOP_LENGTH = 256


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value" if "must be" in message else None)


def _check_number(body: dict, name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise _bad(name, f"'{name}' must be a number, got {type(value).__name__}.")
    if not lo <= value <= hi:
        raise _bad(name, f"'{name}' must be between {lo:g} and {hi:g}, got {value}.")


def _check_int(body: dict, name: str, lo: int, hi: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, f"'{name}' must be an integer, got {type(value).__name__}.")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise _bad(name, f"'{name}' must be {bound}, got {value}.")


def _check_bool(body: dict, name: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise _bad(name, f"'{name}' must be a boolean, got {type(value).__name__}.")


def _check_content(content: Any, param: str, role: str) -> None:
    if content is None:
        if role in ("assistant", "function"):
            return
        raise _bad(param, f"'{param}' is required for role '{role}'.")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(param, f"'{param}' must be a string or an array of content parts.")
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _bad(p, f"'{p}' must be an object.")
        kind = part.get("type")
        if kind in _MEDIA_PARTS and role != "user":  # as OpenAI: a provider would otherwise drop them unseen
            raise _bad(f"{p}.type", f"'{p}.type' {kind!r} is only allowed in user messages, not {role!r} ones.")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _bad(f"{p}.text", f"'{p}.text' must be a string.")
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url:
                raise _bad(f"{p}.image_url.url", f"'{p}.image_url.url' must be a non-empty string.")
        elif kind == "file":
            _check_file(part.get("file"), f"{p}.file")
        elif kind in ("input_audio", "refusal"):
            continue
        else:
            raise _bad(f"{p}.type", f"'{p}.type' must be one of 'text', 'image_url', 'input_audio', 'file', got {kind!r}.")


def _check_file(spec: Any, param: str) -> None:
    if not isinstance(spec, dict):
        raise _bad(param, f"'{param}' must be an object with 'file_data' or 'file_id'.")
    for key in ("file_data", "file_id", "filename"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise _bad(f"{param}.{key}", f"'{param}.{key}' must be a string.")
    if not spec.get("file_data") and not spec.get("file_id"):
        raise _bad(param, f"'{param}' must have 'file_data' or 'file_id'.")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _bad("messages", "'messages' must be an array of message objects.")
    if not messages:
        raise _bad("messages", "'messages' must contain at least one message.")
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(p, f"'{p}' must be an object.")
        role = msg.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad(f"{p}.role", f"'{p}.role' must be one of {', '.join(sorted(_ROLES))}, got {role!r}.")
        if role == "assistant" and msg.get("tool_calls") is not None:
            _check_tool_calls(msg["tool_calls"], f"{p}.tool_calls")
            if msg.get("content") is None:
                continue
        if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise _bad(f"{p}.tool_call_id", f"'{p}.tool_call_id' is required for role 'tool'.")
        _check_content(msg.get("content"), f"{p}.content", role)


def _check_tool_calls(calls: Any, param: str) -> None:
    """An assistant turn's calls, as OpenAI takes them: an id, and a function's name and arguments string."""
    if not isinstance(calls, list):
        raise _bad(param, f"'{param}' must be an array.")
    for k, call in enumerate(calls):
        p = f"{param}[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise _bad(f"{p}.function", f"'{p}.function' must be an object with a name and arguments.")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise _bad(f"{p}.id", f"'{p}.id' must be a non-empty string.")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _bad(f"{p}.function.name", f"'{p}.function.name' must be a non-empty string.")
        if not isinstance(fn.get("arguments", ""), str):
            raise _bad(f"{p}.function.arguments", f"'{p}.function.arguments' must be a string of JSON.")


def _check_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("tools", "'tools' must be an array.")
    for i, tool in enumerate(tools or ()):
        p = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _bad(f"{p}.type", f"'{p}.type' must be 'function'.")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _bad(f"{p}.function.name", f"'{p}.function.name' must be a non-empty string.")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _bad(f"{p}.function.parameters", f"'{p}.function.parameters' must be a JSON schema object.")
    choice = body.get("tool_choice")
    named = isinstance(choice, dict) and isinstance(choice.get("function"), dict) \
        and isinstance(choice["function"].get("name"), str) and choice["function"]["name"]
    if choice is not None and not (choice in ("none", "auto", "required") or named):
        raise _bad("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or "
                                  "{\"type\": \"function\", \"function\": {\"name\": ...}}.")
    if (choice == "required" or named) and not tools:
        raise _bad("tool_choice", "'tool_choice' asks for a tool call, but 'tools' offers none.")
    if named and choice["function"]["name"] not in {t["function"]["name"] for t in tools}:
        raise _bad("tool_choice", f"'tool_choice' names the function {choice['function']['name']!r}, "
                                  "which is not in 'tools'.")


def _check_stop(body: dict, most: int) -> None:
    stop = body.get("stop")
    if stop is None:
        return
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("stop", "'stop' must be a string or an array of strings.")
    if len(stops) > most:
        raise _bad("stop", f"'stop' may hold at most {most} sequences.")
    if any(len(s) > MAX_STOP_LENGTH for s in stops):
        raise _bad("stop", f"'stop' sequences may be at most {MAX_STOP_LENGTH} characters long.")


def _check_response_format(body: dict) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise _bad("response_format.type", "'response_format.type' must be one of 'text', 'json_object', 'json_schema'.")
    if fmt["type"] == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            raise _bad("response_format.json_schema", "'response_format.json_schema' must be an object with a 'name'.")


_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def _check_reasoning(body: dict) -> None:
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:
        raise _bad("reasoning_effort", f"'reasoning_effort' must be one of {', '.join(map(repr, _EFFORTS))}.")
    claude_effort = body.get("effort")  # Anthropic's output_config.effort, from the Anthropic ingress
    if claude_effort is not None and claude_effort not in CLAUDE_EFFORTS:
        raise _bad("effort", f"'effort' must be one of {', '.join(map(repr, CLAUDE_EFFORTS))}.")
    thinking = body.get("thinking")  # Anthropic's form, as LiteLLM-style clients send it
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        raise _bad("thinking", "'thinking' must be {\"type\": \"enabled\", \"budget_tokens\": N}, "
                               "{\"type\": \"adaptive\"} or {\"type\": \"disabled\"}.")
    budget = thinking.get("budget_tokens")
    if thinking["type"] == "enabled" and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024):
        raise _bad("thinking.budget_tokens", "'thinking.budget_tokens' must be an integer of at least 1024.")


def _check_logit_bias(bias: Any) -> None:
    if not isinstance(bias, dict):
        raise _bad("logit_bias", "'logit_bias' must be an object mapping token ids to biases.")
    for token, value in bias.items():
        if not token.isdigit():
            raise _bad("logit_bias", f"'logit_bias' keys must be token ids (integers as strings), got {token!r}.")
        if isinstance(value, bool) or not isinstance(value, _NUMBER) or not -100 <= value <= 100:
            raise _bad("logit_bias", f"'logit_bias' values must be between -100 and 100, got {value!r} for {token}.")


def validate_chat_body(body: Any, max_stops: int = MAX_STOPS) -> None:
    """Raise `InvalidRequest` naming the first invalid parameter of a chat-completions body."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "'model' is required and must be a non-empty string.")
    _check_messages(body.get("messages"))
    _check_bool(body, "stream")
    _check_number(body, "temperature", 0, 2)
    _check_number(body, "top_p", 0, 1)
    _check_number(body, "presence_penalty", -2, 2)
    _check_number(body, "frequency_penalty", -2, 2)
    _check_int(body, "n", 1, 128)
    _check_int(body, "max_tokens", 1)
    _check_int(body, "max_completion_tokens", 1)
    _check_int(body, "seed", -(2**63), 2**63 - 1)
    _check_bool(body, "logprobs")
    _check_int(body, "top_logprobs", 0, 20)
    _check_stop(body, max_stops)
    _check_tools(body)
    _check_response_format(body)
    _check_reasoning(body)
    so = body.get("stream_options")
    if so is not None:
        if not isinstance(so, dict):
            raise _bad("stream_options", "'stream_options' must be an object.")
        if not body.get("stream"):
            raise _bad("stream_options", "'stream_options' is only allowed when 'stream' is true.")
        _check_bool(so, "include_usage")
    bias = body.get("logit_bias")
    if bias is not None:
        _check_logit_bias(bias)
    if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
        raise _bad("top_logprobs", "'top_logprobs' needs 'logprobs' to be true.")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", "'user' must be a string.")


class ChatRequest:
    """A validated chat request in canonical (OpenAI) form."""

    __slots__ = ("body", "model", "stream", "include_usage")

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.model: str = body["model"]
        self.stream: bool = bool(body.get("stream"))
        so = body.get("stream_options")
        self.include_usage: bool = bool(so and so.get("include_usage"))

    @classmethod
    def from_body(cls, body: Any, max_stops: int = MAX_STOPS) -> ChatRequest:
        validate_chat_body(body, max_stops)
        return cls(body)

    @property
    def max_output_tokens(self) -> int | None:
        return self.body.get("max_completion_tokens") or self.body.get("max_tokens")

    def has_visual_input(self) -> bool:
        """Whether the conversation holds images or files (PDF pages reach a model as images)."""
        return bool(self.media_parts())

    def media_parts(self) -> tuple[dict[str, Any], ...]:
        """The image and file parts of the conversation."""
        return tuple(part for msg in self.body["messages"] if isinstance(content := msg.get("content"), list)
                     for part in content if isinstance(part, dict) and part.get("type") in ("image_url", "file"))

    def prompt_text(self) -> str:
        """All text of the conversation, for routing and local token counting."""
        return messages_text(self.body["messages"])


def messages_text(messages: Any) -> str:
    """The text of OpenAI-shaped messages (string contents and text parts), one message a line."""
    out: list[str] = []
    for msg in messages if isinstance(messages, list) else ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(out)


def validate_embeddings_body(body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "'model' is required and must be a non-empty string.")
    inp = body.get("input")
    ok = isinstance(inp, str) or (
        isinstance(inp, list) and inp and (
            all(isinstance(x, str) for x in inp)
            or all(isinstance(x, int) and not isinstance(x, bool) for x in inp)
            or all(isinstance(x, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in x) for x in inp)))
    if not ok:
        raise _bad("input", "'input' must be a string, an array of strings, or an array of token arrays, and not empty.")
    if isinstance(inp, list) and len(inp) > 2048:
        raise _bad("input", "'input' may hold at most 2048 items.")
    if inp == "" or (isinstance(inp, list) and any(x == "" or x == [] for x in inp)):
        raise _bad("input", "'input' must not be an empty string (or hold one).")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _bad("encoding_format", "'encoding_format' must be 'float' or 'base64'.")
    _check_int(body, "dimensions", 1)
