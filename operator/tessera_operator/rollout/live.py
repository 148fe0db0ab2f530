"""Live canary figures from the serving pods' own counters, judged as differences since the step began.

Pods report running totals (vLLM's request counter by finished_reason and the time-to-first-token
histogram). A canary step compares what the candidate's and the stable version's pods did *since the
step started*: the operator records every pod's counters when the step begins (status.rollout.liveBaseline)
and subtracts them later. A pod whose counters went down restarted: everything it reports now is since
the restart, hence within the step. A pod that appeared after the step began counts from zero. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tessera_operator.api.v1alpha1.model import LiveBaseline, LiveCounters

from .types import LiveObservation

TTFT_QUANTILE = 0.95


@dataclass(frozen=True)
class PodCounters:
    """One pod's running totals now, with the version it serves."""

    version: str
    requests: float
    errors: float
    ttft_buckets: tuple[tuple[float, float], ...]
    """(upper bound in seconds, cumulative count) for every finite bound, in increasing order."""
    ttft_count: float


def baseline(step: int, step_started: str | None, pods: Mapping[str, PodCounters]) -> LiveBaseline:
    """The record of every pod's counters at the start of a step (bounds from the first pod that has any)."""
    bounds = next((tuple(b for b, _ in p.ttft_buckets) for p in pods.values() if p.ttft_buckets), ())
    recorded = {}
    for name, pod in sorted(pods.items()):
        counts = dict(pod.ttft_buckets)
        recorded[name] = LiveCounters(
            requests=pod.requests, errors=pod.errors, ttft_count=pod.ttft_count,
            ttft_buckets=[counts.get(bound, 0.0) for bound in bounds],
        )  # fmt: skip
    return LiveBaseline(step=step, step_started=step_started, ttft_bounds=list(bounds), pods=recorded)


def _since(pod: PodCounters, before: LiveCounters | None, bounds: Sequence[float]) -> PodCounters:
    """What a pod did since its baseline (all of it when it is new or restarted)."""
    if before is None or pod.requests < before.requests or pod.ttft_count < before.ttft_count:
        return pod
    earlier = dict(zip(bounds, before.ttft_buckets, strict=False))
    buckets = tuple((bound, max(0.0, count - earlier.get(bound, 0.0))) for bound, count in pod.ttft_buckets)
    return PodCounters(pod.version, pod.requests - before.requests, max(0.0, pod.errors - before.errors),
                       buckets, pod.ttft_count - before.ttft_count)  # fmt: skip


def quantile(q: float, buckets: Sequence[tuple[float, float]], count: float) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly within its bucket (as Prometheus'
    histogram_quantile does); None without observations. Beyond the last finite bound: that bound."""
    if count <= 0:
        return None
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            width = cumulative - lower_count
            share = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, cumulative
    return lower_bound if buckets else None


@dataclass(frozen=True)
class _Totals:
    requests: float
    errors: float
    ttft_buckets: tuple[tuple[float, float], ...]
    ttft_count: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0


def _totals(pods: Sequence[PodCounters]) -> _Totals:
    buckets: dict[float, float] = {}
    for pod in pods:
        for bound, count in pod.ttft_buckets:
            buckets[bound] = buckets.get(bound, 0.0) + count
    return _Totals(sum(p.requests for p in pods), sum(p.errors for p in pods), tuple(sorted(buckets.items())),
                   sum(p.ttft_count for p in pods))  # fmt: skip


def observe_live(
    pods: Mapping[str, PodCounters], recorded: LiveBaseline, candidate: str, stable: str
) -> LiveObservation:
    """Candidate and stable figures since the baseline was taken (pods of other versions are ignored)."""
    deltas = {name: _since(pod, recorded.pods.get(name), recorded.ttft_bounds) for name, pod in pods.items()}
    ours = _totals([d for d in deltas.values() if d.version == candidate])
    theirs = _totals([d for d in deltas.values() if d.version == stable])
    return LiveObservation(
        candidate_requests=int(ours.requests),
        candidate_error_rate=ours.error_rate,
        stable_error_rate=theirs.error_rate,
        candidate_ttft_p95_s=quantile(TTFT_QUANTILE, ours.ttft_buckets, ours.ttft_count),
        stable_ttft_p95_s=quantile(TTFT_QUANTILE, theirs.ttft_buckets, theirs.ttft_count),
        stable_requests=int(theirs.requests),
    )


def describe(live: LiveObservation) -> str:
    """The figures in one line, for events and messages."""

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}s"

    return (f"candidate {live.candidate_requests} requests, {live.candidate_error_rate:.2%} errors, p95 TTFT "
            f"{seconds(live.candidate_ttft_p95_s)}; stable {live.stable_requests} requests, "
            f"{live.stable_error_rate:.2%} errors, p95 TTFT {seconds(live.stable_ttft_p95_s)}")  # fmt: skip
