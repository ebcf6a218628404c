"""Stop sequences the gateway applies itself, for those an upstream refuses (Claude takes no whitespace-only
sequence such as "\\n", which OpenAI clients send often).

The answer is cut where the first such sequence begins, and ends with finish_reason `stop` and the sequence as
`stop_sequence`, as if the model had stopped there. A stream holds back only the text that could be the start of
a sequence, so the rest flows on as it comes; once a sequence is found the upstream is closed, which ends its
generation (and its billing) early.
"""

from __future__ import annotations

from typing import Any


def earliest(text: str, stops: list[str]) -> tuple[int, str] | None:
    """(position, sequence) of the first stop sequence in `text`, the longest one where two begin together."""
    found: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (found is None or (at, -len(stop)) < (found[0], -len(found[1]))):
            found = (at, stop)
    return found


def cut_completion(completion: dict[str, Any], stops: list[str]) -> None:
    """Cut a whole chat completion at its first stop sequence: the text before it stays, tool calls after it go."""
    choice = completion["choices"][0]
    message = choice["message"]
    text = message.get("content")
    found = earliest(text, stops) if isinstance(text, str) else None
    if found is None:
        return
    message["content"] = text[:found[0]]
    message.pop("tool_calls", None)
    choice["finish_reason"] = "stop"
    choice["stop_sequence"] = found[1]


class StreamStops:
    """Cuts a stream of OpenAI chunks at the first stop sequence in its content, across chunk boundaries."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hold = max(map(len, stops)) - 1  # the most text that can be an unfinished sequence
        self.pending = ""  # content not yet sent: it may be where a sequence begins
        self.template: dict[str, Any] | None = None
        self.stopped = False
        self.received: list[str] = []  # the content received, sent or not

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks to send for one upstream chunk. After a stop (`stopped`), the caller closes the upstream."""
        choices = chunk.get("choices")
        delta = choices[0].get("delta") if choices else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if not isinstance(content, str):
            return [*self._flush(chunk), chunk]
        self.template = chunk
        self.received.append(content)
        text = self.pending + content
        found = earliest(text, self.stops)
        if found is not None:
            self.stopped = True
            self.pending = ""
            before = self._content(chunk, text[:found[0]]) if found[0] else []
            end = {**chunk["choices"][0], "delta": {}, "finish_reason": "stop", "stop_sequence": found[1]}
            return [*before, {**chunk, "choices": [end]}]
        keep = _unfinished(text, self.stops, self.hold)
        self.pending = text[len(text) - keep:] if keep else ""
        ready = text[:len(text) - keep]
        if ready or content == "":  # an empty delta (the role chunk) goes on as it is
            return self._content(chunk, ready)
        return []

    def _flush(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The text held back, sent before a chunk of another kind (a finish, a tool call, usage)."""
        if not self.pending or self.template is None:
            return []
        held, self.pending = self.pending, ""
        return self._content(self.template, held)

    @staticmethod
    def _content(chunk: dict[str, Any], text: str) -> list[dict[str, Any]]:
        choice = {**chunk["choices"][0], "delta": {**chunk["choices"][0]["delta"], "content": text}}
        return [{**chunk, "choices": [choice]}]


def _unfinished(text: str, stops: list[str], hold: int) -> int:
    """How many characters at the end of `text` could be the start of a stop sequence."""
    for n in range(min(hold, len(text)), 0, -1):
        tail = text[-n:]
        if any(stop.startswith(tail) for stop in stops):
            return n
    return 0
