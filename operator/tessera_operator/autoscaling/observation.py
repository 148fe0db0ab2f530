"""What the autoscaler sees of one Model at one instant, and what it answers.

These are plain, immutable values: the operator fills an `Observation` from the pods' and the router's
`/metrics` (or from Prometheus), the simulator fills one from its model of the fleet, and both hand it
to the same `decide` function.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PodSample:
    """One serving pod's metrics, with vLLM's metric names, over the last interval."""

    ready: bool
    #: The pod's name (lets a policy keep per-pod windows).
    name: str = ""
    #: `vllm:num_requests_running`: sequences scheduled on the engine (prefilling or decoding).
    running: float = 0.0
    #: `vllm:num_requests_waiting`: requests the engine accepted but could not schedule yet.
    waiting: float = 0.0
    #: `vllm:kv_cache_usage_perc`, as a fraction from 0 to 1.
    kv_cache_usage: float = 0.0
    #: Mean time to first token of the requests whose first token came out during the interval.
    ttft_seconds: float | None = None
    #: Mean time per output token during the interval (`vllm:time_per_output_token_seconds`,
    #: called `vllm:inter_token_latency_seconds` in newer vLLM); None when no token was decoded.
    tpot_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """A snapshot of one Model: its replicas, its router counters and its pods' metrics."""

    #: Seconds on a clock that only moves forward (the operator uses Unix time).
    time_seconds: float
    #: The workload's `spec.replicas` now (ready, loading and not yet scheduled pods together).
    replicas: int
    #: Pods that pass their readiness probe and take traffic.
    ready_replicas: int
    #: Pods created but not ready yet: capacity on its way.
    loading_replicas: int
    #: Requests the router has sent to pods and not seen finish.
    router_in_flight: int = 0
    #: Requests the router holds because no pod of the Model is ready (scale from zero).
    router_held: int = 0
    #: Requests per second arriving at the router over the last interval; None when unknown.
    request_rate: float | None = None
    #: The router's 95th percentile of upstream time to first token over the last interval.
    ttft_p95_seconds: float | None = None
    pods: tuple[PodSample, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: how many replicas the Model should have, and why, in one sentence."""

    desired_replicas: int
    reason: str
    #: The load the policy estimated, in replicas working at their target (for status and plots).
    demand_replicas: float = 0.0
