"""The decision under construction, shared by the machine's modules."""

from __future__ import annotations

from datetime import datetime

from tessera_operator.api.v1alpha1 import RolloutStatus, TrafficWeight

from .conditions import rollout_conditions
from .timeutil import format_time
from .types import Action, EmitEvent, RolloutDecision, RolloutInputs

MAX_REJECTED = 20


def evaluation_name(model: str, version: str, attempt: int, now: datetime) -> str:
    """A fresh ModelEvaluation name per attempt (the time keeps names unique after a manual retry)."""
    suffix = f"-{version}-{attempt}-{int(now.timestamp()):x}"
    return model[: 253 - len(suffix)].rstrip("-.") + suffix


class Decision:
    """The decision under construction."""

    def __init__(self, inputs: RolloutInputs) -> None:
        self.inputs = inputs
        self.now = format_time(inputs.now)
        self.stable = inputs.stable
        self.candidate = inputs.candidate
        self.status = (inputs.rollout or RolloutStatus()).model_copy(deep=True)
        self.rejected = list(inputs.rejected)
        self.actions: list[Action] = []
        self.requeue: float | None = None
        self.held_reason: str | None = None
        self.progress_reason: str | None = None
        """Overrides the Progressing condition's reason for this decision (e.g. AwaitingLiveEvidence)."""
        self.passed_this_decision = False

    def event(self, kind: str, reason: str, message: str) -> None:
        self.actions.append(EmitEvent("Warning" if kind == "Warning" else "Normal", reason, message))

    def wait(self, seconds: float) -> None:
        seconds = max(1.0, seconds)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def enter(self, phase: str, message: str) -> None:
        """Move to a phase; its timer starts now."""
        self.status.phase = phase  # type: ignore[assignment]
        self.status.step_started = self.now
        self.status.message = message

    @property
    def phase(self) -> str:
        return self.status.phase

    @property
    def gated(self) -> bool:
        policy = self.inputs.policy
        return policy is not None and bool(policy.evaluation_suites)

    def verdict(self) -> str | None:
        observed = self.inputs.evaluation
        if observed is None or observed.name != self.status.evaluation:
            return None
        return observed.verdict

    def traffic(self) -> list[TrafficWeight]:
        if self.stable is None:
            return []
        if self.candidate is None:
            return [TrafficWeight(version=self.stable.version, weight=100)]
        weight = 0
        if self.phase == "Promoting":
            weight = 100
        elif self.phase == "Canary":
            steps = self.inputs.policy.canary_steps if self.inputs.policy else []
            weight = steps[min(self.status.step, len(steps) - 1)].weight if steps else 0
        return [
            TrafficWeight(version=self.stable.version, weight=100 - weight),
            TrafficWeight(version=self.candidate.version, weight=weight),
        ]

    def finish(self) -> RolloutDecision:
        return RolloutDecision(
            stable=self.stable,
            candidate=self.candidate,
            rollout=self.status,
            traffic=self.traffic(),
            rejected=self.rejected[-MAX_REJECTED:],
            actions=self.actions,
            conditions=rollout_conditions(self.status, self.held_reason, self.inputs.conditions, self.now,
                                          self.progress_reason),
            requeue_after_s=self.requeue,
        )
