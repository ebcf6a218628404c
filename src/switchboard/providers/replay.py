"""The replay provider: answers from recorded prompt -> response files instead of a live model.

Why: to run the whole gateway path (routing, accounting, `compare`) offline on
*real* model output, and to give users deterministic tests of their own apps.
A deployment names the recordings and the model whose answers to serve:

    models:
      gpt-4:
        deployments:
          - provider: replay
            model: gpt-4-1106-preview          # whose answers to serve (and the catalog price)
            recordings: ../shared/data/routellm/gsm8k/responses.csv

Two file formats are read in place (never copied):

* JSONL, as the gateway's record mode writes it: one object a line with
  `messages` (or `prompt`) and `response`; a line with a `model` serves only
  the deployment whose model (upstream id or gateway name) it names.
* CSV in RouteLLM's layout: a `prompt` column and one `<model>_response`
  column per model.

A request matches a recording by `prompt_key` of its last user message.
A prompt with no recording is a 400 (`no_recorded_response`), never a guess:
a replay that silently answered something else would make a comparison lie.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import sys
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchboard import errors
from switchboard.accounting.tokens import estimate_tokens
from switchboard.config import Deployment
from switchboard.core.request import ChatRequest
from switchboard.errors import UpstreamError
from switchboard.providers.base import Provider

DEFAULT_CHUNK_WORDS = 8
_WORDS = re.compile(r"\S+\s*|\s+")


def prompt_key(text: str) -> str:
    """The matching key of a prompt: Unicode NFKC, whitespace runs collapsed to one space, trimmed, casefolded."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: Iterable[Any]) -> str:
    """The text of the last user message (what a recording is keyed on)."""
    text = ""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            text = message_text(message)
    return text


class RecordingsError(Exception):
    """A recordings file is missing, unreadable or lacks the requested model."""


@dataclass(slots=True)
class RecordingFile:
    """One parsed file: answers by model (None = any model) and prompt key."""

    path: str
    mtime: float
    size: int
    by_model: dict[str | None, dict[str, str]] = field(default_factory=dict)
    columns: tuple[str, ...] = ()

    def answers_for(self, names: tuple[str, ...]) -> dict[str, str] | None:
        """The answers recorded for the first of `names` present, merged over model-less lines."""
        generic = self.by_model.get(None)
        for name in names:
            specific = self.by_model.get(name)
            if specific is not None:
                return {**generic, **specific} if generic else specific
        return generic


def read_recordings(path: str) -> RecordingFile:
    """Parse a recordings file (CSV or JSONL by extension/content). Blocking: run it off the event loop."""
    try:
        st = os.stat(path)
        if path.endswith(".csv"):
            return _read_csv(path, st)
        return _read_jsonl(path, st)
    except OSError as exc:
        raise RecordingsError(f"cannot read recordings {path}: {exc.strerror or exc}") from None


def _read_csv(path: str, st: os.stat_result) -> RecordingFile:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    out = RecordingFile(path, st.st_mtime, st.st_size)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = tuple(reader.fieldnames or ())
        if "prompt" not in columns:
            raise RecordingsError(f"{path}: a recordings CSV needs a 'prompt' column (has: {', '.join(columns)})")
        models = [c[: -len("_response")] for c in columns if c.endswith("_response")]
        out.columns = tuple(models)
        tables = {m: out.by_model.setdefault(m, {}) for m in models}
        for row in reader:
            key = prompt_key(row["prompt"] or "")
            for m in models:
                answer = row.get(m + "_response")
                if answer is not None and answer != "":
                    tables[m][key] = answer
    return out


def _read_jsonl(path: str, st: os.stat_result) -> RecordingFile:
    out = RecordingFile(path, st.st_mtime, st.st_size)
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                if not line.endswith(b"\n"):
                    continue  # a line still being appended by record mode
                raise RecordingsError(f"{path}:{number}: not valid JSON") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("response"), str):
                raise RecordingsError(f"{path}:{number}: each line needs a string 'response'")
            if isinstance(rec.get("messages"), list):
                text = last_user_text(rec["messages"])
            elif isinstance(rec.get("prompt"), str):
                text = rec["prompt"]
            else:
                raise RecordingsError(f"{path}:{number}: each line needs 'messages' or 'prompt'")
            model = rec.get("model") if isinstance(rec.get("model"), str) else None
            out.by_model.setdefault(model, {})[prompt_key(text)] = rec["response"]
    out.columns = tuple(m for m in out.by_model if m is not None)
    return out


class ReplayProvider(Provider):
    kind = "replay"
    restat_seconds = 1.0  # how often a file is checked for changes (record mode may be appending)

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self._files: dict[str, RecordingFile] = {}
        self._checked: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------ recordings

    @staticmethod
    def paths(deployment: Deployment) -> list[str]:
        value = deployment.options.get("recordings")
        if isinstance(value, str) and value:
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
        raise UpstreamError(errors.SERVER, f"{deployment.id}: a replay deployment needs 'recordings: PATH' "
                                           "(a JSONL or CSV file, or a list of them)")

    async def _file(self, path: str, deployment: Deployment) -> RecordingFile:
        now = time.monotonic()
        cached = self._files.get(path)
        if cached is not None and now - self._checked.get(path, 0.0) < self.restat_seconds:
            return cached
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:
            cached = self._files.get(path)
            try:
                st = os.stat(path)
            except OSError as exc:
                raise UpstreamError(errors.SERVER, f"{deployment.id}: cannot read recordings {path}: "
                                                   f"{exc.strerror or exc}") from None
            if cached is None or (cached.mtime, cached.size) != (st.st_mtime, st.st_size):
                try:
                    cached = await asyncio.to_thread(read_recordings, path)
                except RecordingsError as exc:
                    raise UpstreamError(errors.SERVER, f"{deployment.id}: {exc}") from None
                self._files[path] = cached
            self._checked[path] = time.monotonic()
            return cached

    async def answer(self, request: ChatRequest, deployment: Deployment) -> str:
        """The recorded response to this request, or a 400 `UpstreamError` naming what was looked up."""
        names = tuple(n for n in (deployment.options.get("recorded_model"), deployment.upstream_model,
                                  deployment.model_name) if isinstance(n, str) and n)
        text = last_user_text(request.body["messages"])
        key = prompt_key(text)
        served = False
        for path in self.paths(deployment):
            answers = (await self._file(path, deployment)).answers_for(names)
            if answers is None:
                continue
            served = True
            found = answers.get(key)
            if found is not None:
                return found
        if not served:
            have = sorted({m for p in self.paths(deployment) for m in self._files[p].columns})
            raise UpstreamError(errors.SERVER, f"{deployment.id}: the recordings hold no answers of "
                                               f"{names[0]!r} (models recorded: {', '.join(have) or 'none'})")
        shown = key if len(key) <= 80 else key[:77] + "..."
        exc = UpstreamError(errors.BAD_REQUEST,
                            f"{deployment.id}: no recorded response of {names[0]!r} for this prompt "
                            f"(last user message, normalised: {shown!r})", param="messages")
        exc.code = "no_recorded_response"
        raise exc

    # ------------------------------------------------------------ the provider interface

    async def chat(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        text = await self.answer(request, deployment)
        prompt, completion = estimate_tokens(request.prompt_text()), estimate_tokens(text)
        return {
            "id": "chatcmpl-replay-" + uuid.uuid4().hex[:20],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": deployment.upstream_model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    async def chat_stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[dict[str, Any]]:
        words = deployment.options.get("chunk_words") or DEFAULT_CHUNK_WORDS
        if isinstance(words, bool) or not isinstance(words, int) or words < 1:
            raise UpstreamError(errors.SERVER, f"{deployment.id}: chunk_words must be a positive integer, got {words!r}")
        text = await self.answer(request, deployment)
        base = {"id": "chatcmpl-replay-" + uuid.uuid4().hex[:20], "object": "chat.completion.chunk",
                "created": int(time.time()), "model": deployment.upstream_model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

        yield chunk({"role": "assistant", "content": ""})
        pieces = _WORDS.findall(text)
        for i in range(0, len(pieces), max(1, words)):
            yield chunk({"content": "".join(pieces[i:i + words])})
        yield chunk({}, "stop")
        prompt, completion = estimate_tokens(request.prompt_text()), estimate_tokens(text)
        yield {**base, "choices": [],
               "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


__all__ = ["ReplayProvider", "prompt_key", "last_user_text", "read_recordings", "RecordingsError"]
