"""Inputs and outputs of the gated-rollout state machine (pure data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from tessera_operator.api.v1alpha1 import (
    Condition,
    RejectedCandidate,
    RolloutSpec,
    RolloutStatus,
    TrafficWeight,
    Verdict,
    VersionRef,
)

ManualAction = Literal["promote", "abort", "retry"]


@dataclass(frozen=True)
class EvaluationObservation:
    """What the operator found for the ModelEvaluation named in status.rollout.evaluation."""

    name: str
    verdict: Verdict | None
    """None while the evaluation runs (its Job exists, no result yet). A Job that failed without
    writing a result should be reported as Error with the Job's reason."""
    reason: str = ""
    finished: datetime | None = None
    """When the result was written (error backoff counts from here)."""


@dataclass(frozen=True)
class LiveObservation:
    """Live figures of candidate and stable since the current canary step began."""

    candidate_requests: int
    candidate_error_rate: float
    stable_error_rate: float
    candidate_ttft_p95_s: float | None = None
    stable_ttft_p95_s: float | None = None
    stable_requests: int = 0


@dataclass(frozen=True)
class ManualRequest:
    """A person's request (from the tessera.dev/rollout-action annotation), with who asked."""

    action: ManualAction
    requested_by: str


@dataclass(frozen=True)
class RolloutSettings:
    """Timings the operator may tune; not part of the API."""

    drain_seconds: float = 30.0
    """How long a version keeps its pods after its traffic went to zero (in-flight requests finish)."""
    retry_backoff_seconds: float = 30.0
    """Wait before the first retry of an evaluation that ended in Error; doubles on each retry."""
    retry_backoff_max_seconds: float = 600.0
    """Longest wait between retries."""
    evidence_wait_factor: float = 3.0
    """A canary step without enough live requests waits this many times its duration, then applies
    `insufficient_evidence`."""
    insufficient_evidence: Literal["advance", "hold"] = "advance"
    """What a step does when it still lacks live evidence after that wait: `advance` moves on with a
    Warning event and says so in the Progressing condition (a quiet model must not block its rollout
    forever, and a missing metric is not a failure); `hold` stops, traffic back to stable, for a person
    to promote, retry or abort."""
    poll_seconds: float = 30.0
    """Requeue interval while waiting for something that sends no event (a running evaluation)."""


@dataclass(frozen=True)
class RolloutInputs:
    """Everything the machine decides from. All rollout state lives in `rollout`, `stable`, `candidate` and
    `rejected` (status fields), so an operator restart at any step resumes at that step."""

    model: str
    """Name of the Model (evaluation names derive from it)."""
    desired: VersionRef
    """The version the spec asks for now (hash of source, engine and placement)."""
    policy: RolloutSpec | None
    """spec.rollout; None replaces the old version as soon as the new one is ready."""
    now: datetime
    stable: VersionRef | None = None
    candidate: VersionRef | None = None
    rollout: RolloutStatus | None = None
    rejected: Sequence[RejectedCandidate] = ()
    candidate_ready: bool = False
    """Whether the candidate's pods are ready to serve."""
    evaluation: EvaluationObservation | None = None
    """The evaluation named in rollout.evaluation; None when neither it nor its Job exists."""
    live: LiveObservation | None = None
    """Live figures for the current canary step; None when metrics are unavailable."""
    manual: ManualRequest | None = None
    conditions: Sequence[Condition] = ()
    """The Model's current conditions (their lastTransitionTime is kept while their status holds)."""
    settings: RolloutSettings = field(default_factory=RolloutSettings)


@dataclass(frozen=True)
class CreateEvaluation:
    """Ensure the evaluation Job for this attempt exists (idempotent: create, ignore AlreadyExists)."""

    name: str
    candidate: str
    baseline: str
    suites: tuple[str, ...]
    attempt: int


@dataclass(frozen=True)
class DeleteVersion:
    """Remove the workloads of a version once its traffic has drained.

    `after_seconds` is the drain still owed; versions that are neither stable nor candidate may also be
    garbage-collected by the operator after a restart."""

    version: str
    reason: str
    after_seconds: float = 0.0


@dataclass(frozen=True)
class Promote:
    """The candidate takes all traffic and becomes stable once the old version has drained."""

    version: str
    previous: str
    requested_by: str | None = None


@dataclass(frozen=True)
class RecordRejected:
    """A candidate was rolled back; the entry is also in the decision's `rejected` list."""

    entry: RejectedCandidate


@dataclass(frozen=True)
class EmitEvent:
    """A Kubernetes Event on the Model."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = CreateEvaluation | DeleteVersion | Promote | RecordRejected | EmitEvent


@dataclass(frozen=True)
class RolloutDecision:
    """What the operator writes (status fields) and does (actions)."""

    stable: VersionRef | None
    candidate: VersionRef | None
    rollout: RolloutStatus
    traffic: list[TrafficWeight]
    rejected: list[RejectedCandidate]
    actions: list[Action]
    conditions: list[Condition]
    """Progressing and RolloutHeld; merge them into status.conditions by type."""
    requeue_after_s: float | None
    """Reconcile again after this long even without events (step timers, backoff, drains)."""

    @property
    def serving(self) -> tuple[str, ...]:
        """Versions whose workloads must exist now."""
        versions = [v.version for v in (self.stable, self.candidate) if v is not None]
        return tuple(dict.fromkeys(versions))

    def events(self) -> list[EmitEvent]:
        """The Events to emit."""
        return [a for a in self.actions if isinstance(a, EmitEvent)]
