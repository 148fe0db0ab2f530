"""The Kubernetes HPA driven by KEDA, from their defaults, on the pods' in-flight requests.

KEDA serves the metric (here the sum of vllm:num_requests_running and vllm:num_requests_waiting over the
pods, the usual vLLM ScaledObject) as an External metric with an AverageValue target, so the HPA asks
for ceil(sum / target) replicas every 15 s, ignoring changes within its 10% tolerance. Scale-up is
limited to max(4 pods, 100%) per period; scale-down takes the highest recommendation of the last 300 s
(stabilization). KEDA itself handles 0 <-> 1: it activates the workload when its trigger is active
(polled every 30 s; the router's held requests count) and deactivates it after a 300 s cooldown.
"""

from __future__ import annotations

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec, Window, ceil_ratio

TOLERANCE = 0.1
DOWN_STABILIZATION_SECONDS = 300.0
UP_PODS, UP_PERCENT = 4, 100
KEDA_POLL_SECONDS = 30.0
KEDA_COOLDOWN_SECONDS = 300.0


class HpaPolicy:
    """HPA (External metric, AverageValue) with KEDA's activation and cooldown."""

    sample_seconds = 15.0

    def __init__(self, context: PolicyContext, target_per_replica: float):
        self.context = context
        self.target = target_per_replica
        self.recommendations = Window(DOWN_STABILIZATION_SECONDS)
        self.last_active: float | None = None
        self.last_poll = -KEDA_POLL_SECONDS
        self.last_reason = ""

    def on_sample(self, observation: Observation) -> int:
        """One HPA sync period (and KEDA's polling for activation)."""
        now = observation.time_seconds
        current = observation.replicas
        usage = sum(pod.running + pod.waiting for pod in observation.pods if pod.ready)
        active = usage > 0 or observation.router_held > 0 or observation.router_in_flight > 0
        if active or self.last_active is None:
            self.last_active = now
        if current == 0:
            if active and now - self.last_poll >= KEDA_POLL_SECONDS - 1e-9:
                self.last_poll = now
                self.last_reason = "KEDA trigger active: activate to one replica"
                return max(1, self.context.min_replicas)
            return 0
        if self.context.min_replicas == 0 and now - self.last_active >= KEDA_COOLDOWN_SECONDS:
            self.last_reason = "KEDA cooldown passed with the trigger inactive"
            return 0
        raw = ceil_ratio(usage, self.target)
        if abs(usage / (self.target * current) - 1.0) <= TOLERANCE:
            raw = current
        raw = self.context.clamp(max(1, raw))
        self.recommendations.add(now, raw)
        if raw > current:
            desired = min(raw, max(current + UP_PODS, current * (100 + UP_PERCENT) // 100))
        else:
            desired = int(self.recommendations.max(now))
        self.last_reason = f"in-flight {usage:.0f} / target {self.target:g} per replica"
        return self.context.clamp(max(1, desired))

    def reason(self) -> str:
        """The metric and target behind the last answer."""
        return self.last_reason


SPEC = PolicySpec(
    name="hpa",
    build=HpaPolicy,
    setting_name="targetPerReplica",
    default_setting=100,
    sweep=(10, 15, 20, 30, 40, 50, 60, 80, 100, 150),
    description="HPA via KEDA: in-flight requests per replica, 300 s scale-down stabilization",
)
