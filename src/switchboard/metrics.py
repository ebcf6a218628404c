"""Prometheus metrics: a tiny registry of our own, rendered in the text exposition format.

Why not prometheus_client: its per-update cost (locks, label lookups through
several layers) is several microseconds, a visible share of our per-request
budget, and it is one more dependency. Here a counter update is one dict
lookup and an add; a histogram observation is a `bisect` and two adds. All
updates happen on the event loop thread, so no locks. Label values are
tuples; the set of series is bounded by the configured models, deployments
and error kinds.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.context import RequestContext

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple, extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.label_names = name, help, labels
        self.values: dict[tuple, float] = {}

    def inc(self, labels: tuple = (), amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def render(self) -> Iterable[str]:
        for labels, value in self.values.items():
            yield f"{self.name}{_labels(self.label_names, labels)} {_num(value)}"


class Gauge(Counter):
    kind = "gauge"

    def set(self, labels: tuple, value: float) -> None:
        self.values[labels] = value


class CallbackGauge(Gauge):
    """A gauge whose values are read when scraped (breaker states, in-flight counts)."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...], read: Callable[[], dict[tuple, float]]) -> None:
        super().__init__(name, help, labels)
        self.read = read

    def render(self) -> Iterable[str]:
        self.values = self.read()
        return super().render()


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.label_names = name, help, labels
        self.bounds = buckets
        self.series: dict[tuple, list] = {}  # labels -> [bucket counts..., sum, count]

    def observe(self, labels: tuple, value: float) -> None:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = [0] * (len(self.bounds) + 1) + [0.0, 0]
        s[bisect_left(self.bounds, value)] += 1
        s[-2] += value
        s[-1] += 1

    def render(self) -> Iterable[str]:
        n = len(self.bounds)
        for labels, s in self.series.items():
            running = 0
            for i, bound in enumerate(self.bounds + (float("inf"),)):
                running += s[i]
                le = 'le="' + _num(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.label_names, labels, le)} {running}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_num(s[n + 1])}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {s[n + 2]}"


class Registry:
    def __init__(self) -> None:
        self.metrics: list = []

    def add(self, metric):
        self.metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for m in self.metrics:
            lines.append(f"# HELP {m.name} {m.help}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            lines.extend(m.render())
        return ("\n".join(lines) + "\n").encode()


class GatewayMetrics:
    """The gateway's own metrics, with one method per event so call sites stay one line."""

    def __init__(self, known: Callable[[str], bool] | None = None) -> None:
        # A name a client made up (a 404) is labelled "-": label values are bounded by the config, not by clients.
        self.known = known or (lambda name: True)
        r = self.registry = Registry()
        self.requests = r.add(Counter("switchboard_requests_total", "Client requests by model requested and status.",
                                      ("model", "status")))
        self.latency = r.add(Histogram("switchboard_request_duration_seconds",
                                       "Whole-request latency as the client saw it.", ("model", "stream")))
        self.ttft = r.add(Histogram("switchboard_ttft_seconds", "Time to the first streamed chunk.", ("model",)))
        self.attempts = r.add(Counter("switchboard_upstream_attempts_total", "Upstream attempts by deployment and outcome.",
                                      ("model", "deployment", "outcome")))
        self.upstream_errors = r.add(Counter("switchboard_upstream_errors_total", "Upstream failures by deployment and kind.",
                                             ("deployment", "kind")))
        self.retries = r.add(Counter("switchboard_retries_total", "Attempts after a request's first one.", ("model",)))
        self.fallbacks = r.add(Counter("switchboard_fallbacks_total", "Switches to a fallback model.",
                                       ("from_model", "to_model", "reason")))
        self.hedges = r.add(Counter("switchboard_hedges_total", "Hedged second attempts and who won.", ("model", "winner")))
        self.breaker_transitions = r.add(Counter("switchboard_breaker_transitions_total",
                                                 "Circuit breaker transitions.", ("deployment", "state")))
        self.stream_interruptions = r.add(Counter("switchboard_stream_interruptions_total",
                                                  "Streams that broke off after the first chunk.", ("deployment",)))
        self.in_flight = 0  # requests being served upstream (streams until they end); kept by the executor
        r.add(CallbackGauge("switchboard_in_flight_requests", "Requests being served upstream right now.", (),
                            lambda: {(): float(self.in_flight)}))

    def add_gauge(self, name: str, help: str, labels: tuple[str, ...], read: Callable[[], dict[tuple, float]]) -> None:
        self.registry.add(CallbackGauge(name, help, labels, read))

    def finished(self, ctx: RequestContext) -> None:
        """Called once per request from settlement."""
        e = ctx.entry
        model = e.model_requested if e.model_requested and self.known(e.model_requested) else "-"
        self.requests.inc((model, e.status))
        self.latency.observe((model, "true" if e.stream else "false"), e.latency_ms / 1000.0)
        if e.ttft_ms is not None:
            self.ttft.observe((model,), e.ttft_ms / 1000.0)

    def render(self) -> bytes:
        return self.registry.render()


async def metrics_endpoint(gw: Any, request: Any) -> Any:
    """GET /metrics: the Prometheus text exposition (unauthenticated, like /health; restrict it at the network)."""
    from switchboard.http.server import Response

    return Response(200, gw.metrics.render(), {"content-type": "text/plain; version=0.0.4; charset=utf-8"})


def openapi_paths(paths: dict) -> None:
    """Adds GET /metrics to the gateway's OpenAPI document."""
    paths["/metrics"] = {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics (text exposition format)",
        "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
