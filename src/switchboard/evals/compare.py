"""`switchboard compare`: every dataset item through the gateway, once per model, graded and summarised.

It talks to a running gateway over HTTP with the official OpenAI SDK, exactly
as the team's app does, so the numbers include the gateway, its routing and
its providers. Answers are streamed (to measure time to first token) with
usage reported in the last chunk; the cost is what the gateway charged for the
answer (`x-switchboard-cost`, or `usage.cost` in a stream's usage chunk), which
follows deployment-level prices. Only a gateway that sends neither gets the
usage priced at what `GET /v1/models` lists, and the report says so.

Resumable: every successful answer is appended to `OUT/responses.jsonl` as it
arrives, keyed by model, messages and parameters; a re-run (after an
interruption, with another grader or more models) asks the gateway only for
what is missing. Errors are not cached, so they are retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from switchboard.evals.analysis import pareto, recommend, summarize
from switchboard.evals.datasets import Item
from switchboard.evals.graders import GraderError, GraderSet


@dataclass
class CompareSettings:
    models: list[str]
    items: list[Item]
    url: str
    api_key: str
    out: Path
    grader: dict[str, Any] | None = None
    concurrency: int = 16
    temperature: float | None = 0.0
    max_tokens: int | None = None
    stream: bool = True
    timeout: float = 120.0
    retries: int = 2
    keep: float = 0.95
    dataset_name: str = ""
    progress: bool = True


@dataclass
class Answer:
    model: str
    item_id: str
    text: str = ""
    error: str | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    served_by: str | None = None
    cost: float = 0.0
    charged: bool = True  # False: `cost` is the list price (the gateway did not say what it charged)
    cached: bool = False


def answer_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class AnswerCache:
    """`responses.jsonl` in the output directory: one successful answer a line, appended as they arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by an interrupted run
                    if isinstance(rec, dict) and "key" in rec:
                        self.entries[rec["key"]] = rec
        self._file = open(path, "a", encoding="utf-8")

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        record = {"key": key, **record}
        self.entries[key] = record
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Progress:
    """A one-line progress bar on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, total: int, label: str = "compare", enabled: bool = True) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.done = self.cached = self.errors = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self.tty = sys.stderr.isatty()
        self._finished = False

    def step(self, cached: bool = False, error: bool = False) -> None:
        self.done += 1
        self.cached += cached
        self.errors += error
        self.draw()

    def draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        decile = self.done * 10 // max(1, self.total)
        if self._finished or (self.tty and not final and now - self._last_draw < 0.1 and self.done < self.total):
            return
        if not self.tty and decile == self._last_decile:
            return
        self._last_draw, self._last_decile = now, decile
        elapsed = max(1e-9, now - self.started)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 28
        filled = int(width * self.done / max(1, self.total))
        line = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{self.done / max(1, self.total):4.0%}  {rate:6.1f}/s  cached {self.cached}  errors {self.errors}  "
                f"{'ETA ' + format(eta, '.0f') + 's' if self.done < self.total else format(elapsed, '.1f') + 's'}")
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        if self.tty and (final or self.done >= self.total) and not self._finished:
            sys.stderr.write("\n")
            self._finished = True
        sys.stderr.flush()


class GatewayClient:
    """The gateway as the compare runner sees it: OpenAI-wire chat calls over our pooled HTTP client, model prices.

    Our own client rather than the OpenAI SDK: it needs no extra install, and at a
    few thousand streamed requests it costs a fraction of the CPU, so the runner
    measures the gateway rather than itself.
    """

    def __init__(self, url: str, api_key: str, timeout: float, retries: int) -> None:
        from switchboard.http.client import HttpClient, Timeouts

        base = url.rstrip("/")
        self.base = base if base.endswith("/v1") else base + "/v1"
        self.headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if api_key:
            self.headers["authorization"] = "Bearer " + api_key
        self.http = HttpClient()
        self.timeouts = Timeouts(connect=min(10.0, timeout), read=timeout, total=timeout)
        self.retries = max(0, retries)
        self.prices: dict[str, tuple[float, float]] = {}
        self.listed: list[str] = []

    async def load_prices(self) -> None:
        import orjson

        from switchboard.http.client import HttpClientError

        try:
            response = await self.http.request("GET", self.base + "/models", headers=self.headers,
                                               timeouts=self.timeouts)
            body = await response.read()
        except (HttpClientError, OSError, TimeoutError) as exc:
            raise GatewayUnreachable(f"cannot reach the gateway at {self.base}: {exc or type(exc).__name__}") from None
        if response.status != 200:
            raise GatewayUnreachable(f"GET {self.base}/models answered HTTP {response.status}: {_error_text(body)}")
        for model in orjson.loads(body).get("data") or ():
            if isinstance(model, dict) and isinstance(model.get("id"), str):
                self.listed.append(model["id"])
                self._note_price(model)

    def _note_price(self, model: dict[str, Any]) -> None:
        pricing = model.get("pricing")
        if isinstance(pricing, dict):
            self.prices[model["id"]] = (float(pricing.get("input_per_mtok") or 0.0),
                                        float(pricing.get("output_per_mtok") or 0.0))

    async def check_models(self, names: list[str]) -> None:
        """Raise UnknownModel for the first name the gateway does not serve. A name a wildcard covers is not
        listed until first used, so what the list lacks is asked for by name (`GET /v1/models/{name}`)."""
        import orjson

        from switchboard.http.client import HttpClientError

        for name in names:
            if name in self.listed:
                continue
            try:
                response = await self.http.request("GET", self.base + "/models/" + quote(name, safe=""),
                                                   headers=self.headers, timeouts=self.timeouts)
                body = await response.read()
            except (HttpClientError, OSError, TimeoutError) as exc:
                raise GatewayUnreachable(f"cannot reach the gateway at {self.base}: {exc or type(exc).__name__}"
                                         ) from None
            if response.status != 200:
                raise UnknownModel(f"unknown model {name!r}; known: {', '.join(sorted(self.listed)) or '(none)'}")
            model = orjson.loads(body)
            if isinstance(model, dict):
                self._note_price({**model, "id": name})

    def cost(self, served_by: str, prompt_tokens: int, completion_tokens: int) -> float:
        inp, out = self.prices.get(served_by, (0.0, 0.0))
        return (prompt_tokens * inp + completion_tokens * out) / 1e6

    async def ask(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool) -> Answer:
        """One chat call, retried on 429, 5xx and dropped connections; failures become `Answer.error`."""
        for attempt in range(self.retries + 1):
            answer, retry_after = await self._ask_once(model, messages, params, stream)
            if retry_after is None or attempt == self.retries:
                return answer
            await asyncio.sleep(min(30.0, retry_after or 0.25 * 2 ** attempt))
        return answer  # pragma: no cover

    async def _ask_once(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any],
                        stream: bool) -> tuple[Answer, float | None]:
        """The answer, and None, or after a retryable failure the seconds to wait (0: back off)."""
        import orjson

        from switchboard.http.client import HttpClientError
        from switchboard.http.sse import SSEDecoder

        answer = Answer(model=model, item_id="")
        body: dict[str, Any] = {"model": model, "messages": messages, **params}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        started = time.perf_counter()
        try:
            response = await self.http.request("POST", self.base + "/chat/completions", headers=self.headers,
                                               body=orjson.dumps(body), timeouts=self.timeouts)
            if response.status != 200:
                data = await response.read()
                answer.error = f"HTTP {response.status}: {_error_text(data)}"[:500]
                if response.status == 429 or response.status >= 500:
                    after = response.headers.get("retry-after", "")
                    return answer, float(after) if after.isdigit() else 0.0
                return answer, None
            answer.served_by = response.headers.get("x-switchboard-model") or model
            charged = _charge(response.headers.get("x-switchboard-cost"))
            if stream:
                parts: list[str] = []
                decoder = SSEDecoder()
                async for raw in response.iter_bytes():
                    for _event, data in decoder.feed(raw):
                        if data == "[DONE]":
                            continue
                        chunk = orjson.loads(data)
                        if "error" in chunk and "choices" not in chunk:
                            answer.error = f"stream broke off: {_error_text(data.encode())}"[:500]
                            continue
                        for choice in chunk.get("choices") or ():
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                if answer.ttft_ms is None:
                                    answer.ttft_ms = (time.perf_counter() - started) * 1000.0
                                parts.append(content)
                        usage = chunk.get("usage")
                        if isinstance(usage, dict):
                            answer.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                            answer.completion_tokens = int(usage.get("completion_tokens") or 0)
                            charged = _charge(usage.get("cost"), charged)
                answer.text = "".join(parts)
            else:
                completion = orjson.loads(await response.read())
                choices = completion.get("choices") or [{}]
                answer.text = ((choices[0].get("message") or {}).get("content")) or ""
                usage = completion.get("usage") or {}
                answer.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                answer.completion_tokens = int(usage.get("completion_tokens") or 0)
        except (HttpClientError, OSError, TimeoutError) as exc:
            answer.error = f"connection: {exc or type(exc).__name__}"[:500]
            return answer, 0.0
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            answer.error = f"the gateway's answer is not a chat completion: {exc}"[:500]
            return answer, None
        if answer.error is not None:
            return answer, 0.0
        answer.latency_ms = (time.perf_counter() - started) * 1000.0
        if answer.ttft_ms is None:
            answer.ttft_ms = answer.latency_ms
        if charged is None:
            answer.charged = False
            charged = self.cost(answer.served_by, answer.prompt_tokens, answer.completion_tokens)
        answer.cost = charged
        return answer, None

    async def close(self) -> None:
        await self.http.close()


class GatewayUnreachable(Exception):
    """The gateway cannot be reached or does not answer `GET /v1/models`."""


class UnknownModel(Exception):
    """A model to compare, or a judge, that the gateway does not serve."""


def _charge(value: Any, default: float | None = None) -> float | None:
    """What the gateway charged, from its header (text) or a stream's `usage.cost`; `default` when it said nothing."""
    if isinstance(value, bool) or value is None:
        return default
    try:
        cost = float(value)
    except (TypeError, ValueError):
        return default
    return cost if math.isfinite(cost) and cost >= 0 else default


def _error_text(body: bytes) -> str:
    from switchboard.providers.base import error_message

    return error_message(body)


def request_params(settings: CompareSettings) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if settings.temperature is not None:
        params["temperature"] = settings.temperature
    if settings.max_tokens is not None:
        params["max_tokens"] = settings.max_tokens
    return params


async def run_compare(settings: CompareSettings) -> dict[str, Any]:
    """Run (or resume) a comparison; returns the result document also written to OUT/results.json."""
    settings.out.mkdir(parents=True, exist_ok=True)
    cache = AnswerCache(settings.out / "responses.jsonl")
    client = GatewayClient(settings.url, settings.api_key, settings.timeout, settings.retries)
    params = request_params(settings)
    try:
        await client.load_prices()

        async def judge_call(model: str, messages: list[dict[str, Any]]) -> tuple[str, float]:
            key = answer_key("judge:" + model, messages, {"temperature": 0})
            hit = cache.get(key)
            if hit is not None:
                return hit["text"], 0.0
            got = await client.ask(model, messages, {"temperature": 0}, stream=False)
            if got.error:
                raise GraderError(f"the judge {model} failed: {got.error}")
            cache.put(key, {"model": "judge:" + model, "item": "", "text": got.text, "cost": got.cost})
            return got.text, got.cost

        graders = GraderSet(settings.grader, judge_call)
        for item in settings.items:  # fail on a bad grader spec before spending anything
            graders.for_item(item)
        await client.check_models([*settings.models, *graders.judge_models()])  # nor on a typo
        progress = Progress(len(settings.items) * len(settings.models), enabled=settings.progress)
        gate = asyncio.Semaphore(max(1, settings.concurrency))
        rows: dict[tuple[str, str], dict[str, Any]] = {}

        async def one(item: Item, model: str) -> None:
            key = answer_key(model, item.messages, params)
            hit = cache.get(key)
            if hit is not None:
                answer = Answer(model=model, item_id=item.id, text=hit["text"], ttft_ms=hit.get("ttft_ms"),
                                latency_ms=hit.get("latency_ms"), prompt_tokens=hit.get("prompt_tokens", 0),
                                completion_tokens=hit.get("completion_tokens", 0), served_by=hit.get("served_by"),
                                cost=hit.get("cost", 0.0), charged=hit.get("charged", False), cached=True)
            else:
                async with gate:
                    answer = await client.ask(model, item.messages, params, settings.stream)
                answer.item_id = item.id
                if answer.error is None:
                    cache.put(key, {"model": model, "item": item.id, "text": answer.text, "ttft_ms": answer.ttft_ms,
                                    "latency_ms": answer.latency_ms, "prompt_tokens": answer.prompt_tokens,
                                    "completion_tokens": answer.completion_tokens, "served_by": answer.served_by,
                                    "cost": answer.cost, "charged": answer.charged, "ts": time.time()})
            row: dict[str, Any] = {"model": model, "item": item.id, "text": answer.text, "error": answer.error,
                                   "ttft_ms": answer.ttft_ms, "latency_ms": answer.latency_ms,
                                   "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                                   "served_by": answer.served_by, "cost": answer.cost, "charged": answer.charged,
                                   "cached": answer.cached,
                                   "correct": False, "extracted": None}
            if answer.error is None:
                grade = await graders.for_item(item).grade(answer.text, item)
                row.update(correct=grade.correct, extracted=grade.extracted, grade_detail=grade.detail)
            rows[(model, item.id)] = row
            progress.step(cached=answer.cached, error=answer.error is not None)

        started = time.time()
        await asyncio.gather(*(one(item, model) for item in settings.items for model in settings.models))
        progress.draw(final=True)
        elapsed = time.time() - started
    finally:
        cache.close()
        await client.close()

    summaries = [summarize(m, [rows[(m, it.id)] for it in settings.items]) for m in settings.models]
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": settings.dataset_name, "n_items": len(settings.items), "models": settings.models,
        "grader": settings.grader, "gateway": settings.url, "elapsed_s": round(elapsed, 3),
        "requests_made": sum(1 for r in rows.values() if not r["cached"]),
        "requests_cached": sum(1 for r in rows.values() if r["cached"]),
        "judge_cost": graders.judge_cost, "prices": {k: list(v) for k, v in client.prices.items()},
        "cost_basis": cost_basis(rows.values()),
        "summaries": summaries, "pareto": pareto(summaries), "recommendation": recommend(summaries, settings.keep),
        "items": [{"id": it.id, "prompt": it.prompt, "expected": it.expected,
                   "results": {m: {k: rows[(m, it.id)][k] for k in ("correct", "extracted", "text", "error",
                                                                      "latency_ms", "ttft_ms", "cost", "served_by")}
                               for m in settings.models}}
                  for it in settings.items],
    }
    await asyncio.to_thread(write_outputs, result, settings.out)
    return result


def cost_basis(rows: Any) -> str:
    """Where the costs come from: "charged" (what the gateway billed), else how many are list prices."""
    answered = [r for r in rows if r["error"] is None]
    listed = sum(1 for r in answered if not r["charged"])
    if not listed:
        return "charged"
    return (f"list prices for {listed} of {len(answered)} answers: the gateway did not say what it charged "
            "(x-switchboard-cost), so deployment-level prices are not applied to them")


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """`results.json` and `report.html` in the output directory."""
    from switchboard.evals.report import write_html

    with open(out / "results.json", "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
    write_html(result, out / "report.html")


def format_table(result: dict[str, Any]) -> str:
    """The terminal table: one row per model."""
    def ms(v: float | None) -> str:
        return "-" if v is None else (f"{v:.0f}" if v >= 10 else f"{v:.1f}")

    header = ("model", "accuracy", "95% CI", "TTFT p50/p95 ms", "total p50/p95 ms", "tokens in/out",
              "$ / 1k req", "errors")
    table = [header]
    for s in result["summaries"]:
        table.append((s["model"], f"{s['accuracy']:.1%}", f"{s['ci_low']:.1%}-{s['ci_high']:.1%}",
                      f"{ms(s['ttft_p50_ms'])}/{ms(s['ttft_p95_ms'])}",
                      f"{ms(s['latency_p50_ms'])}/{ms(s['latency_p95_ms'])}",
                      f"{s['prompt_tokens_mean']:.0f}/{s['completion_tokens_mean']:.0f}",
                      f"{s['cost_per_1k']:.4f}", str(s["errors"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
