"""The figures a simulation run is judged by, and the timeline behind its plot."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tessera_operator.simulator.replica import Replica, RequestLog


@dataclass(slots=True)
class Timeline:
    """Replicas (spec and ready) and the arrival rate, sampled at a fixed spacing."""

    times: list[float] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    request_rate: list[float] = field(default_factory=list)

    def record(self, now: float, replicas: int, ready: int, rate: float) -> None:
        """Append one sample."""
        self.times.append(now)
        self.replicas.append(replicas)
        self.ready.append(ready)
        self.request_rate.append(rate)


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What one run cost and how well it served."""

    gpu_hours: float
    slo_attainment: float
    ttft_mean_seconds: float
    ttft_p50_seconds: float
    ttft_p95_seconds: float
    ttft_p99_seconds: float
    tpot_p99_seconds: float
    replica_changes_per_hour: float
    rejected_requests: int
    requests: int
    duration_seconds: float
    peak_replicas: int
    timeline: Timeline

    def figures(self) -> dict[str, Any]:
        """The figures with camelCase keys, as JSON outputs spell them."""
        return {
            "gpuHours": round(self.gpu_hours, 4),
            "sloAttainment": round(self.slo_attainment, 5),
            "ttftMeanSeconds": round(self.ttft_mean_seconds, 4),
            "ttftP50Seconds": round(self.ttft_p50_seconds, 4),
            "ttftP95Seconds": round(self.ttft_p95_seconds, 4),
            "ttftP99Seconds": round(self.ttft_p99_seconds, 4),
            "tpotP99Seconds": round(self.tpot_p99_seconds, 5),
            "replicaChangesPerHour": round(self.replica_changes_per_hour, 2),
            "rejectedRequests": self.rejected_requests,
            "requests": self.requests,
            "durationSeconds": round(self.duration_seconds, 1),
            "peakReplicas": self.peak_replicas,
        }


def percentile(ordered: list[float], fraction: float) -> float:
    """The `fraction` quantile of sorted values, interpolating linearly; NaN when empty."""
    if not ordered:
        return math.nan
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(
    log: RequestLog,
    first_request: int,
    start: float,
    replicas: list[Replica],
    timeline: Timeline,
    end: float,
    changes: int,
    gpus_per_replica: int,
    ttft_slo_seconds: float,
    tpot_slo_seconds: float,
) -> SimulationResult:
    """Turn a finished run's per-request log and replica lifetimes into its figures; requests before
    `first_request` and time before `start` are the warm-up and do not count."""
    ttfts: list[float] = []
    tpots: list[float] = []
    within = 0
    rejected = 0
    for request in range(first_request, len(log.arrival)):
        arrival = log.arrival[request]
        if log.rejected[request] or math.isnan(log.finish[request]):
            rejected += 1
            continue
        first = log.first_token[request]
        ttft = first - arrival
        generated = log.generated[request]
        tpot = (log.finish[request] - first) / (generated - 1) if generated > 1 else 0.0
        ttfts.append(ttft)
        tpots.append(tpot)
        if ttft <= ttft_slo_seconds and tpot <= tpot_slo_seconds:
            within += 1
    ttfts.sort()
    tpots.sort()
    seconds = 0.0
    for replica in replicas:
        gone = replica.released_at if not math.isnan(replica.released_at) else end
        seconds += max(0.0, min(gone, end) - max(start, replica.created))
    duration = end - start
    hours = duration / 3600 if duration > 0 else 1.0
    total = len(log.arrival) - first_request
    return SimulationResult(
        gpu_hours=seconds * gpus_per_replica / 3600,
        slo_attainment=within / total if total else 1.0,
        ttft_mean_seconds=sum(ttfts) / len(ttfts) if ttfts else math.nan,
        ttft_p50_seconds=percentile(ttfts, 0.50),
        ttft_p95_seconds=percentile(ttfts, 0.95),
        ttft_p99_seconds=percentile(ttfts, 0.99),
        tpot_p99_seconds=percentile(tpots, 0.99),
        replica_changes_per_hour=changes / hours,
        rejected_requests=rejected,
        requests=total,
        duration_seconds=duration,
        peak_replicas=max(timeline.replicas, default=0),
        timeline=timeline,
    )
