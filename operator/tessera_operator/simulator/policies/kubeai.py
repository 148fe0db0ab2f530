"""KubeAI's autoscaler, from its defaults: a 10-minute moving average of active requests.

Every 10 s it samples the proxy's active requests for the model (queued cold-start requests included),
averages the last 60 samples, and asks for ceil(average / targetRequests) replicas. Scale-up is
immediate and has no tolerance; scale-down needs 3 consecutive lower readings (scaleDownDelaySeconds 30).
It reaches zero only when all 60 samples are 0, and any request brings a Model at zero to one replica.
"""

from __future__ import annotations

from collections import deque

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec, ceil_ratio

SAMPLES = 60
SCALE_DOWN_READINGS = 3


class KubeAIPolicy:
    """Moving average of in-flight requests against a per-replica target."""

    sample_seconds = 10.0

    def __init__(self, context: PolicyContext, target_requests: float):
        self.context = context
        self.target = target_requests
        self.samples: deque[float] = deque(maxlen=SAMPLES)
        self.lower_readings = 0
        self.last_reason = ""

    def on_sample(self, observation: Observation) -> int:
        """Average, divide by the target, scale up at once and down after 3 lower readings."""
        current = observation.replicas
        self.samples.append(observation.router_in_flight + observation.router_held)
        average = sum(self.samples) / len(self.samples)
        desired = self.context.clamp(ceil_ratio(average, self.target))
        if current == 0 and observation.router_held > 0:
            desired = max(1, desired)  # a request for a Model at zero scales it to one at once
        self.last_reason = f"average in-flight {average:.1f} / target {self.target:g}"
        if desired >= current:
            self.lower_readings = 0
            return desired
        self.lower_readings += 1
        if self.lower_readings >= SCALE_DOWN_READINGS:
            self.lower_readings = 0
            return desired
        return current

    def reason(self) -> str:
        """The average and target behind the last answer."""
        return self.last_reason


SPEC = PolicySpec(
    name="kubeai",
    build=KubeAIPolicy,
    setting_name="targetRequests",
    default_setting=100,
    sweep=(10, 15, 20, 30, 40, 50, 60, 80, 100, 150),
    description="KubeAI: 10-minute moving average of in-flight requests per replica",
)
