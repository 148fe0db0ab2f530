"""The router's Prometheus metrics (names fixed by the contract with the operator's autoscaler).

Labels are the Model's name and namespace, never the name a client typed (that would let clients
create series) and never anything about API keys. Requests for no known Model count under
model="" and namespace="".
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LABELS = ("model", "namespace")

HOLD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0,
)  # fmt: skip

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class ModelSeries:
    """The labelled children of one Model, resolved once so the request path skips label lookups."""

    inflight: Gauge
    held: Gauge
    hold_seconds: Histogram
    ttft: Histogram


class RouterMetrics:
    """Counters, gauges and histograms of one router, in a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "tessera_router_requests", "Requests answered, by Model and HTTP status.", (*LABELS, "code"), registry=reg
        )
        self.errors = Counter(
            "tessera_router_errors", "Requests that failed, by Model and cause.", (*LABELS, "cause"), registry=reg
        )
        self.inflight = Gauge(
            "tessera_router_inflight_requests", "Requests being proxied to a Model's pods.", LABELS, registry=reg
        )
        self.held = Gauge(
            "tessera_router_held_requests",
            "Requests held because the Model has no ready endpoint (scale from zero).",
            LABELS,
            registry=reg,
        )
        self.hold_seconds = Histogram(
            "tessera_router_hold_seconds",
            "Time requests were held waiting for a ready endpoint.",
            LABELS,
            buckets=HOLD_BUCKETS,
            registry=reg,
        )
        self.ttft = Histogram(
            "tessera_router_upstream_ttft_seconds",
            "Time from sending a request upstream to its first response body bytes.",
            LABELS,
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self._series: dict[tuple[str, str], ModelSeries] = {}
        self._codes: dict[tuple[str, str, int], Counter] = {}

    def series(self, model: str, namespace: str) -> ModelSeries:
        """The per-Model children (created on first use)."""
        key = (model, namespace)
        found = self._series.get(key)
        if found is None:
            found = ModelSeries(
                inflight=self.inflight.labels(model, namespace),
                held=self.held.labels(model, namespace),
                hold_seconds=self.hold_seconds.labels(model, namespace),
                ttft=self.ttft.labels(model, namespace),
            )
            self._series[key] = found
        return found

    def count_request(self, model: str, namespace: str, code: int) -> None:
        """One answered request."""
        key = (model, namespace, code)
        child = self._codes.get(key)
        if child is None:
            child = self.requests.labels(model, namespace, str(code))
            self._codes[key] = child
        child.inc()

    def count_error(self, model: str, namespace: str, cause: str) -> None:
        """One failed request, by cause."""
        self.errors.labels(model, namespace, cause).inc()

    def exposition(self) -> bytes:
        """The text exposition for GET /metrics."""
        return generate_latest(self.registry)
