"""AIBrix's APA (AIBrix Pod Autoscaler) on KV-cache usage, from its defaults.

Every 10 s it compares the pods' mean gpu_cache_usage_perc with the target: r = mean / target. Above
1 + 10% it asks for min(ceil(N r), 2N); below 1 - 10%, max(ceil(N r), floor(N / 2)); N is the current
replica count. Scale-down waits out a 300 s cooldown (the docs' intent; the code at the pinned commit
takes a minimum over the window, which does not delay). Without a guard, N counting pods that are still
loading while r comes from the ready ones made it run away (2 -> 4 -> 8 -> 16, aibrix#2670); the
pending-replica guard merged in aibrix#2671 holds scale-up while replicas are pending, and is on here.
"""

from __future__ import annotations

import math

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec

TOLERANCE = 0.1
MAX_UP_FACTOR = 2.0
MAX_DOWN_FACTOR = 0.5
COOLDOWN_SECONDS = 300.0


class AIBrixPolicy:
    """APA on the mean KV-cache usage of the ready pods."""

    sample_seconds = 10.0

    def __init__(self, context: PolicyContext, target_usage: float, pending_guard: bool = True):
        self.context = context
        self.target = target_usage
        self.pending_guard = pending_guard
        self.last_change: float | None = None
        self.last_reason = ""

    def on_sample(self, observation: Observation) -> int:
        """One APA evaluation."""
        now = observation.time_seconds
        current = observation.replicas
        ready = [pod for pod in observation.pods if pod.ready]
        if current == 0:
            return self.context.clamp(1) if observation.router_held else 0
        if not ready:
            return current
        mean = sum(pod.kv_cache_usage for pod in ready) / len(ready)
        ratio = mean / self.target
        desired = current
        if ratio > 1 + TOLERANCE:
            if not (self.pending_guard and observation.loading_replicas > 0):
                desired = min(math.ceil(current * ratio), int(current * MAX_UP_FACTOR))
        elif ratio < 1 - TOLERANCE:
            cooled = self.last_change is None or now - self.last_change >= COOLDOWN_SECONDS
            if cooled:
                desired = max(math.ceil(current * ratio), math.floor(current * MAX_DOWN_FACTOR))
        desired = self.context.clamp(max(1, desired))
        if desired != current:
            self.last_change = now
        self.last_reason = f"mean KV usage {mean:.2f} / target {self.target:g}"
        return desired

    def reason(self) -> str:
        """The metric and target behind the last answer."""
        return self.last_reason


SPEC = PolicySpec(
    name="aibrix",
    build=AIBrixPolicy,
    setting_name="targetKvCacheUsage",
    default_setting=0.5,
    sweep=(0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    description="AIBrix APA: mean KV-cache usage against a target, x2 up / half down",
)
