"""The autoscaler loop's operator side: observe a Model's pods and router, call the pure policy, record it.

Every reconcile of a Model with `autoscaling.policy: tessera` (the refresh timer, a pod change, or the
router's demand annotation) scrapes the ready pods' /metrics in parallel, reads the router's held-request
signal, builds an `Observation`, calls `autoscaling.decide`, and returns the replica count the workload is
applied with plus the `status.autoscaling` written in the reconcile's single status write. Other policies
keep `spec.replicas` (written by a user, or by HPA/KEDA through the Model's scale subresource).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tessera_operator.api.v1alpha1 import AutoscalingStatus, ModelSpec, ModelStatus
from tessera_operator.autoscaling import Decision, Observation, PodSample, PolicyConfig, PolicyState, decide
from tessera_operator.rollout.timeutil import parse_duration, parse_time

from . import prometheus
from . import replicas as replica_policy
from .scrape import PodMetrics, RouterMetrics, fetch_text, parse_router_metrics, scrape_pods

Json = dict[str, Any]
DEMAND_ANNOTATION = "tessera.dev/demand-at"
#: A demand mark counts as a held request this long: the router re-marks every 5 s while it holds one.
DEMAND_FRESH_SECONDS = 20.0


@dataclass(frozen=True)
class AutoscalerSettings:
    """Where the signals come from (TESSERA_ROUTER_METRICS_URL, TESSERA_PROMETHEUS_URL,
    TESSERA_SCRAPE_TIMEOUT_SECONDS)."""

    router_metrics_url: str | None = None
    prometheus_url: str | None = None
    """Read the pods' signals from this Prometheus instead of scraping them."""
    scrape_timeout_seconds: float = 1.0
    interval_seconds: float = 15.0

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None, interval_seconds: float = 15.0) -> AutoscalerSettings:
        """Read the settings from TESSERA_* variables."""
        source = os.environ if env is None else env
        return AutoscalerSettings(
            router_metrics_url=source.get("TESSERA_ROUTER_METRICS_URL") or None,
            prometheus_url=source.get("TESSERA_PROMETHEUS_URL") or None,
            scrape_timeout_seconds=float(source.get("TESSERA_SCRAPE_TIMEOUT_SECONDS", "1.0")),
            interval_seconds=interval_seconds,
        )


@dataclass(frozen=True)
class Fleet:
    """The serving version's replicas as the reconcile saw them, and its pods (wire form)."""

    replicas: int
    ready: int
    pods: tuple[Json, ...] = ()


@dataclass(frozen=True)
class Scaling:
    """The replicas to apply, the status.autoscaling to write (None: leave it), and an event when scaled."""

    replicas: int
    status: Json | None = None
    event: str | None = None


def policy_config(spec: ModelSpec, interval_seconds: float, cold_start_seconds: float | None) -> PolicyConfig:
    """The policy's settings from the Model's bounds, SLO and targets (KV cache, queue and concurrency)."""
    bounds, slo, targets = spec.autoscaling, spec.slo, spec.autoscaling.targets
    kv_target = targets.kv_cache_utilization if targets is not None else None
    extra: dict[str, Any] = {}  # PolicyConfig fields the Model sets; the rest keep their defaults
    if targets is not None and targets.queue_per_replica is not None:
        extra["queue_per_replica"] = targets.queue_per_replica
    if targets is not None and targets.concurrency_per_replica is not None:
        extra["concurrency_per_replica"] = targets.concurrency_per_replica
    if targets is not None and targets.max_scale_downs_per_hour is not None:
        extra["max_scale_downs_per_hour"] = targets.max_scale_downs_per_hour
    if slo is not None and slo.time_to_first_token_seconds is not None:
        extra["ttft_slo_seconds"] = slo.time_to_first_token_seconds
    if slo is not None and slo.time_per_output_token_seconds is not None:
        extra["tpot_slo_seconds"] = slo.time_per_output_token_seconds
    if kv_target is not None:
        extra["kv_cache_target"] = kv_target
    if cold_start_seconds is not None:
        extra["cold_start_seconds"] = cold_start_seconds
    return PolicyConfig(
        min_replicas=bounds.min_replicas,
        max_replicas=bounds.max_replicas,
        scale_to_zero_after_seconds=parse_duration(bounds.scale_to_zero_after),
        interval_seconds=interval_seconds,
        **extra,
    )


def pod_ready(pod: Json) -> bool:
    """Whether a pod passes its readiness probe and is not going away."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def state_to_strings(state: PolicyState) -> dict[str, str]:
    """PolicyState as the strings map of status.autoscaling.state (each value JSON)."""
    return {key: json.dumps(value, separators=(",", ":")) for key, value in state.to_dict().items()}


def state_from_strings(data: Mapping[str, str]) -> PolicyState:
    """Read back `state_to_strings`; anything unreadable gives a fresh state."""
    try:
        return PolicyState.from_dict({key: json.loads(value) for key, value in data.items()})
    except (ValueError, TypeError):
        return PolicyState()


def _mean_delta(now: tuple[float, float], before: tuple[float, float] | None) -> float | None:
    """Mean of a histogram over the interval: Δsum / Δcount (None when nothing was observed)."""
    if before is None:
        return None
    count = now[1] - before[1]
    if count <= 0:
        return None
    return max(0.0, (now[0] - before[0]) / count)


def pod_sample(name: str, now: PodMetrics, before: PodMetrics | None) -> PodSample:
    """A ready pod's sample: gauges now, histogram means over the interval since the previous scrape."""
    return PodSample(
        ready=True,
        name=name,
        running=now.running,
        waiting=now.waiting,
        kv_cache_usage=min(1.0, max(0.0, now.kv_cache_usage)),
        ttft_seconds=_mean_delta((now.ttft_sum, now.ttft_count),
                                 None if before is None else (before.ttft_sum, before.ttft_count)),
        tpot_seconds=_mean_delta((now.tpot_sum, now.tpot_count),
                                 None if before is None else (before.tpot_sum, before.tpot_count)),
    )


def demand_held(annotations: Mapping[str, str], zero_since: float | None, now: float) -> bool:
    """Whether the router's demand mark asks for a replica: newer than the last scale to zero, and fresh."""
    marked = parse_time(annotations.get(DEMAND_ANNOTATION))
    if marked is None:
        return False
    at = marked.timestamp()
    return (zero_since is None or at > zero_since) and now - at <= DEMAND_FRESH_SECONDS


@dataclass
class _Memory:
    """Per-Model running totals from the previous scrape (to turn counters into interval rates)."""

    pods: dict[str, PodMetrics] = field(default_factory=dict)
    finished: float | None = None
    router_total: float | None = None
    time: float | None = None
    #: The policy's state as of the last tick. Status holds it only as of the last replica change, so
    #: an idle Model costs no status write per tick; after a restart the policy resumes from status.
    state: PolicyState | None = None


class Autoscaler:
    """Decides replicas for Models whose policy is `tessera`; other policies keep spec.replicas."""

    def __init__(
        self,
        settings: AutoscalerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        scrape: Callable[[dict[str, str], float], dict[str, PodMetrics | None]] = scrape_pods,
        fetch: Callable[[str, float], str | None] = fetch_text,
    ) -> None:
        self.settings = settings or AutoscalerSettings()
        self.clock, self.scrape, self.fetch = clock, scrape, fetch
        self._memory: dict[tuple[str, str], _Memory] = {}
        self._lock = threading.Lock()

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted Model's running totals."""
        with self._lock:
            self._memory.pop((namespace, name), None)

    def scale(self, live: Json, spec: ModelSpec, status: ModelStatus, fleet: Fleet | None, now_text: str) -> Scaling:
        """The replicas to run now; for policy `tessera`, the decision and status.autoscaling to record."""
        if spec.autoscaling.policy != "tessera":
            return Scaling(replica_policy.static_replicas(spec))
        meta = live["metadata"]
        key = (meta.get("namespace") or "default", meta["name"])
        previous = status.autoscaling
        now = self.clock()
        if fleet is None or (previous is None and fleet.replicas == 0):
            # A new Model starts at max(1, minReplicas): it is asked for, so it is warmed once; idleness
            # then takes it to zero when minReplicas allows.
            current = max(1, spec.autoscaling.min_replicas) if previous is None else previous.desired_replicas
            fleet = Fleet(current, 0)
        observation = self._observe(key, live, fleet, previous, now)
        cold_start = status.plan.estimated_load_seconds if status.plan is not None else None
        config = policy_config(spec, self.settings.interval_seconds, cold_start)
        with self._lock:
            memory = self._memory.setdefault(key, _Memory())
        state = memory.state
        if state is None:
            state = state_from_strings(previous.state) if previous is not None else PolicyState()
        decision, new_state = decide(state, observation, config)
        memory.state = new_state
        return self._record(decision, new_state, fleet.replicas, previous, now_text)

    def _observe(
        self, key: tuple[str, str], live: Json, fleet: Fleet, previous: AutoscalingStatus | None, now: float
    ) -> Observation:
        ready_pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in fleet.pods
                      if pod_ready(p) and (p.get("status") or {}).get("podIP")}
        prometheus_url = self.settings.prometheus_url
        timeout = self.settings.scrape_timeout_seconds
        scraped = {} if prometheus_url else self.scrape(ready_pods, timeout)
        from_prometheus = (prometheus.pod_samples(prometheus_url, key[0], list(ready_pods), timeout, self.fetch)
                           if prometheus_url else ())
        router = self._router(key)
        with self._lock:
            memory = self._memory.setdefault(key, _Memory())
            samples = tuple(pod_sample(name, metrics, memory.pods.get(name))
                            for name, metrics in scraped.items() if metrics is not None)
            if prometheus_url:
                samples = from_prometheus
            finished = sum(m.finished for m in scraped.values() if m is not None)
            elapsed = None if memory.time is None else now - memory.time
            rate: float | None = None
            if router is not None and memory.router_total is not None and elapsed:
                rate = max(0.0, router.requests_total - memory.router_total) / elapsed
            elif memory.finished is not None and elapsed and scraped:
                rate = max(0.0, finished - memory.finished) / elapsed
            memory.pods = {name: m for name, m in scraped.items() if m is not None}
            memory.finished = finished if scraped else None
            memory.router_total = router.requests_total if router is not None else None
            memory.time = now
        zero_since = None
        if previous is not None and previous.desired_replicas == 0:
            since = parse_time(previous.last_scale_time)
            zero_since = since.timestamp() if since is not None else None
        held = int(router.held) if router is not None else 0
        if held == 0 and demand_held(live["metadata"].get("annotations") or {}, zero_since, now):
            held = 1
        return Observation(
            time_seconds=now,
            replicas=fleet.replicas,
            ready_replicas=fleet.ready,
            loading_replicas=max(0, fleet.replicas - fleet.ready),
            router_in_flight=int(router.in_flight) if router is not None else 0,
            router_held=held,
            request_rate=rate,
            pods=samples,
        )

    def _router(self, key: tuple[str, str]) -> RouterMetrics | None:
        url = self.settings.router_metrics_url
        if not url:
            return None
        text = self.fetch(url, self.settings.scrape_timeout_seconds)
        if text is None:
            return None
        try:
            return parse_router_metrics(text, key[0], key[1])
        except ValueError:
            return None

    @staticmethod
    def _record(
        decision: Decision, state: PolicyState, current: int, previous: AutoscalingStatus | None, now_text: str
    ) -> Scaling:
        changed = decision.desired_replicas != current
        if not changed and previous is not None and previous.desired_replicas == decision.desired_replicas:
            # Nothing to act on: keep the recorded decision (and its state) as is, so the status
            # write is skipped; the running state lives in memory until the next change.
            return Scaling(decision.desired_replicas, previous.to_api(), None)
        last_scale = now_text if changed or previous is None else previous.last_scale_time
        status = AutoscalingStatus(
            desired_replicas=decision.desired_replicas,
            reason=decision.reason[:1024],
            last_scale_time=last_scale,
            state=state_to_strings(state),
        ).to_api()
        event = decision.reason if changed else None
        return Scaling(decision.desired_replicas, status, event)
