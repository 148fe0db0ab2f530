"""Reading the autoscaler's signals: each ready pod's /metrics (vLLM names) and the router's /metrics.

Parsing is pure (text in, numbers out) so it is unit-tested without a server; fetching is a plain HTTP GET
with a short timeout, done for all pods in parallel so one slow pod costs one timeout, not one per pod.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"
TTFT = "vllm:time_to_first_token_seconds"
#: Time per output token: current vLLM calls it inter-token latency; older releases used the other name.
TPOT_NAMES = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
SUCCESS = "vllm:request_success"


@dataclass(frozen=True, slots=True)
class PodMetrics:
    """One scrape of a pod: gauges as they are now, histograms and counters as running totals."""

    running: float = 0.0
    waiting: float = 0.0
    kv_cache_usage: float = 0.0
    ttft_sum: float = 0.0
    ttft_count: float = 0.0
    tpot_sum: float = 0.0
    tpot_count: float = 0.0
    finished: float = 0.0
    errors: float = 0.0
    """Requests finished in error (vllm:request_success_total{finished_reason="error"}); the canary's live check."""
    ttft_buckets: tuple[tuple[float, float], ...] = ()
    """TTFT histogram as (upper bound, cumulative count), finite bounds in increasing order (canary p95)."""


@dataclass(frozen=True, slots=True)
class RouterMetrics:
    """The router's figures for one Model: requests in flight and held, and the running request count."""

    in_flight: float = 0.0
    held: float = 0.0
    requests_total: float = 0.0


def _samples(text: str) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, sample.labels, float(sample.value)


def parse_pod_metrics(text: str) -> PodMetrics:
    """Sum a pod's vLLM series over their labels (one engine may serve several model names)."""
    totals: dict[str, float] = {}
    errors = 0.0
    ttft: dict[float, float] = {}
    for name, labels, value in _samples(text):
        if value != value:  # NaN: a gauge never set
            continue
        totals[name] = totals.get(name, 0.0) + value
        if name == SUCCESS + "_total" and labels.get("finished_reason") == "error":
            errors += value
        elif name == TTFT + "_bucket" and labels.get("le") not in (None, "+Inf"):
            bound = float(labels["le"])
            ttft[bound] = ttft.get(bound, 0.0) + value
    tpot = next((n for n in TPOT_NAMES if n + "_count" in totals), TPOT_NAMES[0])
    return PodMetrics(
        running=totals.get(RUNNING, 0.0),
        waiting=totals.get(WAITING, 0.0),
        kv_cache_usage=totals.get(KV_CACHE, 0.0),
        ttft_sum=totals.get(TTFT + "_sum", 0.0),
        ttft_count=totals.get(TTFT + "_count", 0.0),
        tpot_sum=totals.get(tpot + "_sum", 0.0),
        tpot_count=totals.get(tpot + "_count", 0.0),
        finished=totals.get(SUCCESS + "_total", 0.0),
        errors=errors,
        ttft_buckets=tuple(sorted(ttft.items())),
    )


def parse_router_metrics(text: str, namespace: str, model: str) -> RouterMetrics:
    """The router's series labelled with this Model (requests summed over response codes)."""
    in_flight = held = total = 0.0
    for name, labels, value in _samples(text):
        if labels.get("model") != model or labels.get("namespace") != namespace:
            continue
        if name == "tessera_router_inflight_requests":
            in_flight += value
        elif name == "tessera_router_held_requests":
            held += value
        elif name == "tessera_router_requests_total":
            total += value
    return RouterMetrics(in_flight, held, total)


def fetch_text(url: str, timeout: float) -> str | None:
    """GET `url` as text; None when it does not answer in time or fails (a scrape is best effort)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body.decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def scrape_pods(addresses: dict[str, str], timeout: float, port: int = 8000) -> dict[str, PodMetrics | None]:
    """Scrape every pod (name -> IP) in parallel; a pod that fails maps to None."""
    if not addresses:
        return {}

    def one(ip: str) -> PodMetrics | None:
        host = f"[{ip}]" if ":" in ip else ip
        text = fetch_text(f"http://{host}:{port}/metrics", timeout)
        if text is None:
            return None
        try:
            return parse_pod_metrics(text)
        except ValueError:
            return None

    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        results = pool.map(one, addresses.values())
        return dict(zip(addresses, results, strict=True))
