"""Prometheus metrics with vLLM's names and labels, so one router, autoscaler and dashboard read either engine.

Names and label sets follow vLLM's v1 engine (`vllm/v1/metrics/loggers.py`): every series carries
`model_name` (the served model name) and `engine` (the engine-core index, always "0" here).
The inter-token latency histogram is `vllm:inter_token_latency_seconds`: current vLLM renamed
`vllm:time_per_output_token_seconds` to it (deprecated in 0.11, hidden since 0.12).
Counters are declared without the `_total` suffix, as vLLM does; the exposition adds it
(`vllm:prompt_tokens_total`, `vllm:generation_tokens_total`, `vllm:request_success_total`).

Each server owns a private `CollectorRegistry`, so several servers (or tests) in one process never
collide in the global registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LABELS = ("model_name", "engine")
FINISHED_REASONS = ("stop", "length", "abort", "error")

# Bucket edges chosen to match vLLM's, so histogram_quantile over a mixed fleet stays meaningful.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

# The metric names every Tessera engine exports; tests and the router rely on this list.
REQUIRED_METRIC_NAMES = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
)


def token_count_buckets(max_value: int) -> tuple[float, ...]:
    """1-2-5 buckets up to `max_value` (vLLM's scheme for token-count histograms)."""
    edges: list[float] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * scale
            if value > max_value:
                return tuple(edges) if edges else (1.0,)
            edges.append(float(value))
        scale *= 10


class EngineMetrics:
    """The metric set of one served model, in its own registry.

    Methods are safe to call from the engine thread: prometheus_client metrics are thread-safe.
    """

    def __init__(
        self, model_name: str, max_model_len: int, registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.model_name = model_name
        values = (model_name, "0")
        reg = self.registry
        self.running = Gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            LABELS,
            registry=reg,
        ).labels(*values)
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", LABELS, registry=reg
        ).labels(*values)
        self.kv_cache_usage = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", LABELS, registry=reg
        ).labels(*values)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", LABELS, registry=reg
        ).labels(*values)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", LABELS, registry=reg
        ).labels(*values)
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            (*LABELS, "finished_reason"),
            registry=reg,
        )
        # Pre-create every reason so the series exist (at zero) before the first request finishes.
        self.request_success = {reason: success.labels(*values, reason) for reason in FINISHED_REASONS}
        self.time_to_first_token = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            LABELS,
            buckets=TTFT_BUCKETS,
            registry=reg,
        ).labels(*values)
        self.inter_token_latency = Histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            LABELS,
            buckets=ITL_BUCKETS,
            registry=reg,
        ).labels(*values)
        self.e2e_latency = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            LABELS,
            buckets=REQUEST_LATENCY_BUCKETS,
            registry=reg,
        ).labels(*values)
        self.queue_time = Histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            LABELS,
            buckets=REQUEST_LATENCY_BUCKETS,
            registry=reg,
        ).labels(*values)
        token_buckets = token_count_buckets(max_model_len)
        self.request_prompt_tokens = Histogram(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            LABELS,
            buckets=token_buckets,
            registry=reg,
        ).labels(*values)
        self.request_generation_tokens = Histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            LABELS,
            buckets=token_buckets,
            registry=reg,
        ).labels(*values)
        self.model_load_seconds = Gauge(
            "tessera_model_load_seconds",
            "Seconds spent loading the model weights (and warming up) before the server became ready.",
            ("model_name",),
            registry=reg,
        ).labels(model_name)

    def set_scheduler_state(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        """Record the scheduler's gauges after a step."""
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_cache_usage.set(kv_cache_usage)

    def observe_finished(
        self, reason: str, e2e_seconds: float, queue_seconds: float, prompt_tokens: int, generated_tokens: int
    ) -> None:
        """Record one finished sequence."""
        self.request_success[reason if reason in self.request_success else "error"].inc()
        self.e2e_latency.observe(e2e_seconds)
        self.queue_time.observe(queue_seconds)
        self.request_prompt_tokens.observe(prompt_tokens)
        self.request_generation_tokens.observe(generated_tokens)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def parse_exposition(text: str) -> dict[str, float]:
    """Sum every sample of a Prometheus text exposition by metric name (labels dropped).

    A small helper for tests and benchmarks; the router and autoscaler have their own readers.
    """
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_and_labels, _, value = line.rpartition(" ")
        name = name_and_labels.split("{", 1)[0]
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals
