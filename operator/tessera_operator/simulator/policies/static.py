"""A fixed fleet of N replicas: what you pay without autoscaling."""

from __future__ import annotations

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec


class StaticPolicy:
    """Always N replicas."""

    sample_seconds = 15.0

    def __init__(self, context: PolicyContext, replicas: float):
        self.replicas = context.clamp(round(replicas))
        self.initial_replicas = self.replicas  # a static fleet is there from the start

    def on_sample(self, observation: Observation) -> int:
        """N, whatever the load."""
        return self.replicas

    def reason(self) -> str:
        """Why: it is static."""
        return f"a static fleet of {self.replicas} replicas"


SPEC = PolicySpec(
    name="static",
    build=StaticPolicy,
    setting_name="replicas",
    default_setting=4,
    sweep=tuple(float(n) for n in range(1, 17)),
    larger_is_leaner=False,
    description="a fixed fleet of N replicas",
)
