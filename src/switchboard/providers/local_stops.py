"""Stop sequences the gateway applies itself, for those an upstream does not take: more than its limit (OpenAI
takes 4, Gemini 5), none at all (OpenAI's reasoning models), or ones it refuses (Claude takes no whitespace-only
sequence such as "\\n", which OpenAI clients send often).

Each adapter declares what its upstream takes (`Provider.stop_limits`, a `StopLimits`; a deployment's
`max_stop_sequences` overrides the count); `plan_stops` splits a request's sequences into those sent upstream and
those applied here. The answer is cut where the first local sequence to be complete begins, and ends with
finish_reason `stop` and the sequence as `stop_sequence`, as if the model had stopped there; an upstream sequence
met earlier has already ended the answer before it, so the client sees the answer cut at the earliest of all its
sequences. A stream holds back only the text that could be the start of a sequence, so the rest flows on as it
comes; once a sequence is found the upstream is closed, which ends its generation (and its billing) early. A
JSON-mode answer (a JSON text, or a tool's input) is never cut here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from switchboard.accounting.tokens import estimate_tokens
from switchboard.errors import InvalidRequest
from switchboard.providers.canonical import response_format, stop_sequences

Chunks = AsyncGenerator[dict[str, Any], None]
#: A stream's usage chunk once it is cut, from the upstream's count so far and at least the given output tokens
#: (an estimate of the text received); None when the upstream has reported none yet (the pipeline counts then).
UsageSoFar = Callable[[int], dict[str, Any] | None]


def whitespace_only(stop: str) -> bool:
    return not stop.strip()


@dataclass(frozen=True)
class StopLimits:
    """What an upstream takes of a request's stop sequences: at most `most` (None: no documented limit), and
    none that `refuses` says it refuses whatever their number."""

    most: int | None = None
    refuses: Callable[[str], bool] | None = None
    # The upstream writes output it never streams (a reasoning model's hidden reasoning), which only the usage at
    # the end of its stream counts: a stream cut here is read to that end, sending the client nothing more, so the
    # charge is the upstream's own.
    hidden_output: bool = False


@dataclass(frozen=True)
class StopPlan:
    """A request's stop sequences split between the upstream and the gateway."""

    upstream: list[str] = field(default_factory=list)
    local: list[str] = field(default_factory=list)
    read_to_end: bool = False  # a cut stream is read to its end for the upstream's usage (`hidden_output`)

    def cut(self, completion: dict[str, Any]) -> dict[str, Any]:
        """A whole chat completion cut at its first local stop sequence."""
        if self.local:
            cut_completion(completion, self.local)
        return completion

    def cut_stream(self, chunks: Chunks, usage_so_far: UsageSoFar | None = None) -> Chunks:
        """The upstream's chunks cut at the first local stop sequence (the chunks as they are when there is none)."""
        return _cut_stream(chunks, self.local, usage_so_far, self.read_to_end) if self.local else chunks


_NO_STOPS = StopPlan()


def plan_stops(body: dict[str, Any], limits: StopLimits) -> StopPlan:
    """Which of the request's stop sequences go upstream (the first ones it takes, in the client's order) and which
    the gateway applies. In JSON mode none is applied here: the answer is never cut, so the rest are left out."""
    stops = stop_sequences(body)
    if not stops:
        return _NO_STOPS
    refused = [s for s in stops if limits.refuses is not None and limits.refuses(s)]
    taken = [s for s in stops if s not in refused]
    upstream = taken if limits.most is None else taken[:limits.most]
    if answers_json(body):
        return StopPlan(upstream)
    local = refused + taken[len(upstream):]
    if local and (body.get("n") or 1) > 1:
        raise InvalidRequest("'n' greater than 1 cannot be served with stop sequences this model does not take "
                             "itself (the gateway applies them to one answer at a time)", param="n",
                             code="unsupported_parameter")
    return StopPlan(upstream, local, limits.hidden_output)


def answers_json(body: dict[str, Any]) -> bool:
    return response_format(body)[0] in ("json_object", "json_schema")


def earliest(text: str, stops: list[str]) -> tuple[int, str] | None:
    """(position, sequence) of the first stop sequence complete in `text`, as a model writing left to right stops
    at it (and as a stream, which sees the text a piece at a time, finds it): the one that ends first, the longest
    where two end together. ("bravo" stops "alpha bravo charlie" before "alpha bravo charlie" is written.)"""
    found: tuple[int, int, str] | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (found is None or (at + len(stop), at) < found[:2]):
            found = (at + len(stop), at, stop)
    return None if found is None else (found[1], found[2])


def cut_completion(completion: dict[str, Any], stops: list[str]) -> None:
    """Cut each choice of a chat completion at its first stop sequence: the text before it stays, tool calls
    after it go."""
    for choice in completion.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        text = message.get("content") if isinstance(message, dict) else None
        found = earliest(text, stops) if isinstance(text, str) else None
        if found is None:
            continue
        message["content"] = text[:found[0]]
        message.pop("tool_calls", None)
        choice["finish_reason"] = "stop"
        choice["stop_sequence"] = found[1]


async def _cut_stream(chunks: Chunks, stops: list[str], usage_so_far: UsageSoFar | None,
                      read_to_end: bool) -> Chunks:
    cutter = StreamStops(stops)
    try:
        async for chunk in chunks:
            for out in cutter.feed(chunk):
                yield out
            if cutter.stopped:
                break
        for out in cutter.end():
            yield out
        if cutter.stopped and read_to_end:
            async for chunk in chunks:
                if not chunk.get("choices") and chunk.get("usage") is not None:
                    yield chunk
    finally:
        await chunks.aclose()  # at a stop, closing the upstream ends its generation
    if cutter.stopped and usage_so_far is not None:
        usage = usage_so_far(estimate_tokens("".join(cutter.received)))
        if usage is not None:
            yield usage


class StreamStops:
    """Cuts a stream of OpenAI chunks (one choice) at the first stop sequence in its content, across chunk
    boundaries."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hold = max(map(len, stops)) - 1  # the most text that can be an unfinished sequence
        self.by_first: dict[str, list[str]] = {}
        for stop in stops:
            if stop:
                self.by_first.setdefault(stop[0], []).append(stop)
        self.pending = ""  # content not yet sent: it may be where a sequence begins
        self.template: dict[str, Any] | None = None
        self.stopped = False
        self.received: list[str] = []  # the content received, sent or not

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks to send for one upstream chunk. After a stop (`stopped`), the caller closes the upstream."""
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if not isinstance(content, str):
            return [*self._flush(), chunk]
        self.template = chunk
        self.received.append(content)
        text = self.pending + content
        found = earliest(text, self.stops)
        if found is not None:
            self.stopped = True
            self.pending = ""
            before = [self._content(chunk, text[:found[0]])] if found[0] else []
            end = {**choice, "delta": {}, "finish_reason": "stop", "stop_sequence": found[1]}
            return [*before, {**chunk, "choices": [end]}]
        # Nothing follows a choice's finish, so what was held back goes out with it.
        keep = 0 if choice.get("finish_reason") else _unfinished(text, self.by_first, self.hold)
        self.pending = text[len(text) - keep:] if keep else ""
        ready = text[:len(text) - keep]
        if ready or content == "":  # an empty delta (the role chunk) goes on as it is
            return [self._content(chunk, ready, choice.get("finish_reason"))]
        return []

    def end(self) -> list[dict[str, Any]]:
        """The text held back when the upstream's stream ends without a finish of its own."""
        return self._flush()

    def _flush(self) -> list[dict[str, Any]]:
        """The text held back, sent before a chunk of another kind (a finish, a tool call, usage)."""
        if not self.pending or self.template is None:
            return []
        held, self.pending = self.pending, ""
        return [self._content(self.template, held)]

    @staticmethod
    def _content(chunk: dict[str, Any], text: str, finish: str | None = None) -> dict[str, Any]:
        choice = chunk["choices"][0]
        return {**chunk, "choices": [{**choice, "delta": {**choice["delta"], "content": text},
                                      "finish_reason": finish}]}


def _unfinished(text: str, by_first: dict[str, list[str]], hold: int) -> int:
    """How many characters at the end of `text` could be the start of a stop sequence. Only the tails that begin
    with some sequence's first character are compared, with those sequences (`by_first`) alone."""
    for at in range(max(0, len(text) - hold), len(text)):
        stops = by_first.get(text[at])
        if stops:
            tail = text[at:]
            if any(stop.startswith(tail) for stop in stops):
                return len(text) - at
    return 0
