"""Knative's KPA, from its defaults: stable and panic windows over observed concurrency.

Concurrency is scraped every second; every 2 s the autoscaler averages it over the stable window (60 s)
and the panic window (6 s, 10% of stable) and divides by the per-pod target (containerConcurrency,
100 unless set, times the 70% target utilisation). Desired pods are clamped to [ready/2, 1000 x ready].
It panics when the panic desire reaches twice the ready pods, then never scales below the panic peak
until a full stable window passes without that condition. It goes to zero 30 s after the stable
average reaches 0; the activator holds requests meanwhile and wakes a Model at zero at once.
"""

from __future__ import annotations

import math

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec, Window, ceil_ratio

STABLE_SECONDS = 60.0
PANIC_SECONDS = 6.0
PANIC_THRESHOLD = 2.0
MAX_SCALE_UP_RATE = 1000.0
MAX_SCALE_DOWN_RATE = 2.0
TICK_SECONDS = 2.0
SCALE_TO_ZERO_GRACE_SECONDS = 30.0


class KnativePolicy:
    """The Knative Pod Autoscaler (KPA)."""

    sample_seconds = 1.0

    def __init__(self, context: PolicyContext, target_per_pod: float):
        self.context = context
        self.target = target_per_pod
        self.window = Window(STABLE_SECONDS)
        self.panic_since: float | None = None
        self.panic_peak = 0
        self.zero_since: float | None = None
        self.next_tick = 0.0
        self.last_reason = ""

    def on_sample(self, observation: Observation) -> int:
        """Scrape every second; decide every 2 s."""
        now = observation.time_seconds
        current = observation.replicas
        self.window.add(now, observation.router_in_flight + observation.router_held)
        if current == 0 and observation.router_held > 0:
            return self.context.clamp(max(1, current))  # the activator pokes the autoscaler
        if now + 1e-9 < self.next_tick:
            return current
        self.next_tick = now + TICK_SECONDS
        ready = max(1, observation.ready_replicas)
        stable = self.window.mean(now)
        panic = self.window.mean(now, PANIC_SECONDS)
        low, high = math.floor(ready / MAX_SCALE_DOWN_RATE), math.ceil(MAX_SCALE_UP_RATE * ready)
        stable_pods = min(high, max(low, ceil_ratio(stable, self.target)))
        panic_pods = min(high, max(low, ceil_ratio(panic, self.target)))
        over = panic_pods / ready >= PANIC_THRESHOLD
        if over:
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since >= STABLE_SECONDS:
            self.panic_since = None
            self.panic_peak = 0
        if self.panic_since is not None:
            desired = max(stable_pods, panic_pods, self.panic_peak)
            self.panic_peak = desired
        else:
            desired = stable_pods
        self.last_reason = f"stable {stable:.1f} panic {panic:.1f} target {self.target:g}"
        if desired == 0 and current > 0:
            # Scale to zero only after the grace period with a zero stable average.
            self.zero_since = now if self.zero_since is None else self.zero_since
            if now - self.zero_since < SCALE_TO_ZERO_GRACE_SECONDS:
                return self.context.clamp(1)  # the last pod stays through the grace period
        else:
            self.zero_since = None
        return self.context.clamp(desired)

    def reason(self) -> str:
        """The windows and target behind the last answer."""
        return self.last_reason


SPEC = PolicySpec(
    name="knative",
    build=KnativePolicy,
    setting_name="targetConcurrencyPerPod",
    default_setting=70,
    sweep=(14, 21, 28, 35, 42, 49, 56, 70, 84, 105),
    description="Knative KPA: 60 s stable / 6 s panic windows over concurrency",
)
