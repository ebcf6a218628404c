"""A value that fits a JSON schema, for the mock models' tool calls and structured answers.

A mock that answers a tool call or a `json_schema` response format with a value
shaped by the schema it received (as a real model does) lets tests parse the
answer into the client's own types, so a translation that loses part of a
schema (a property, `required`, an enum, a nested `$ref`) fails a test. Every
string is `text`; the first of an enum or of `anyOf`'s choices is taken; every
property is filled, optional or not. Gemini's upper-case type names are read too.
"""

from __future__ import annotations

from typing import Any

_FORMATS = {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01", "time": "00:00:00Z",
            "email": "mock@example.com", "uri": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000"}
_MAX_DEPTH = 12  # recursive schemas (a tree of nodes) stop here with an empty array or null
#: The schema of a function declared without parameters: models call it with an empty object, never a string.
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def example_of(schema: Any, text: str) -> Any:
    """A value valid against `schema` (a JSON schema, or Gemini's Schema subset)."""
    return _example(schema, text, schema if isinstance(schema, dict) else {}, 0)


def _example(schema: Any, text: str, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict):
        return text
    if "$ref" in schema:
        return _example(_resolve(root, schema["$ref"]), text, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "any_of", "allOf"):
        choices = [c for c in schema.get(key) or () if isinstance(c, dict) and _type(c) != "null"]
        if choices:
            return _example(choices[0], text, root, depth + 1)
    kind = _type(schema)
    if kind == "object" or (kind is None and "properties" in schema):
        if depth >= _MAX_DEPTH:
            return {}
        return {name: _example(sub, text, root, depth + 1) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        if depth >= _MAX_DEPTH:
            return []
        return [_example(schema.get("items") or {}, text, root, depth + 1)
                for _ in range(max(1, int(schema.get("minItems") or 0)))]
    if kind == "integer":
        return int(schema.get("minimum") or 0) + 1 if schema.get("maximum") is None else int(schema["maximum"])
    if kind == "number":
        return float(schema.get("minimum") or 0) + 0.5 if schema.get("maximum") is None else float(schema["maximum"])
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    value = text[:schema["maxLength"]] if isinstance(schema.get("maxLength"), int) else text
    return value.ljust(int(schema.get("minLength") or 0), "x")


def _type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    return str(kind).lower() if kind is not None else None


def _resolve(root: dict[str, Any], ref: Any) -> Any:
    """The schema a local `$ref` (#/$defs/Name, #/definitions/Name) points at."""
    node: Any = root
    for part in str(ref).removeprefix("#/").split("/") if str(ref).startswith("#/") else ():
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}
