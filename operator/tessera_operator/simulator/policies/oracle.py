"""The oracle: knows the future load and starts replicas exactly one cold start ahead of need.

It reads the trace (no other policy does), turns each minute's requests into the replica-seconds of work
they bring (from the profile's step-time model), and needs ceil(work / utilisation) replicas in that
minute. At any moment it keeps the most that any minute of the next cold start needs, so each replica is
ready when its minute comes and none is let go that could not come back in time. Its utilisation is
swept like the baselines' targets, and the cheapest setting that meets the SLO is the lower bound.
"""

from __future__ import annotations

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.capacity import replicas_for_work, work_per_bucket
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec

BUCKET_SECONDS = 60.0


class OraclePolicy:
    """Clairvoyant: max need over the next cold start."""

    sample_seconds = 5.0

    def __init__(self, context: PolicyContext, utilisation: float):
        self.context = context
        work = work_per_bucket(context.trace, context.profile, BUCKET_SECONDS)
        self.need = [replicas_for_work(load, utilisation) for load in work]
        self.cold_start = context.profile.cold_start_seconds
        self.utilisation = utilisation

    def needed(self, moment: float) -> int:
        """Replicas the minute containing `moment` needs (0 after the trace)."""
        index = int(moment // BUCKET_SECONDS)
        return self.need[index] if 0 <= index < len(self.need) else 0

    def on_sample(self, observation: Observation) -> int:
        """Keep what any minute within the next cold start needs."""
        now = observation.time_seconds
        first = int(now // BUCKET_SECONDS)
        last = int((now + self.cold_start) // BUCKET_SECONDS)
        wanted = max(self.needed(index * BUCKET_SECONDS) for index in range(first, last + 1))
        if observation.router_in_flight or observation.router_held:
            wanted = max(1, wanted)
        return self.context.clamp(wanted)

    def reason(self) -> str:
        """How it decides."""
        return f"future work at {self.utilisation:.2f} utilisation, one cold start ahead"


SPEC = PolicySpec(
    name="oracle",
    build=OraclePolicy,
    setting_name="utilisation",
    default_setting=0.7,
    sweep=(0.5, 0.55, 0.6, 0.625, 0.65, 0.675, 0.7, 0.725, 0.75, 0.8, 0.85),
    description="knows the future; starts replicas one cold start ahead of need (lower bound)",
)
