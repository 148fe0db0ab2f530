"""Tessera's policy in the simulator: the very `decide` function the operator runs, fed by the model."""

from __future__ import annotations

from tessera_operator.autoscaling import Observation, PolicyConfig, PolicyState, decide
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec


def config_for(context: PolicyContext, tpot_target_fraction: float) -> PolicyConfig:
    """The config the operator would build for this Model: bounds, SLO, cold start and step cost."""
    return PolicyConfig(
        min_replicas=context.min_replicas,
        max_replicas=context.max_replicas,
        scale_to_zero_after_seconds=context.scale_to_zero_after_seconds,
        ttft_slo_seconds=context.ttft_slo_seconds,
        tpot_slo_seconds=context.tpot_slo_seconds,
        cold_start_seconds=context.profile.cold_start_seconds,
        unloaded_tpot_seconds=context.profile.step_overhead_seconds,
        tpot_target_fraction=tpot_target_fraction,
    )


class TesseraPolicy:
    """Holds the policy state between calls, as Model.status does in the operator."""

    def __init__(self, context: PolicyContext, tpot_target_fraction: float):
        self.config = config_for(context, tpot_target_fraction)
        self.sample_seconds = self.config.interval_seconds
        self.state = PolicyState()
        self.last_reason = ""

    def on_sample(self, observation: Observation) -> int:
        """One call of `decide`, its state kept for the next."""
        decision, self.state = decide(self.state, observation, self.config)
        self.last_reason = decision.reason
        return decision.desired_replicas

    def reason(self) -> str:
        """The last decision's sentence."""
        return self.last_reason


SPEC = PolicySpec(
    name="tessera",
    build=TesseraPolicy,
    setting_name="tpotTargetFraction",
    default_setting=0.35,
    sweep=(0.35,),  # run at its default: the target follows from the SLO, it is not tuned per trace
    larger_is_leaner=True,
    description="Tessera: utilisation from TPOT, learned request cost, trend one cold start ahead",
)
