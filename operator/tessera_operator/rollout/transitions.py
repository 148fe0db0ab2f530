"""Transitions shared by the phases and manual requests: start, evaluate, canary, promote, roll back, hold."""

from __future__ import annotations

from tessera_operator.api.v1alpha1 import RejectedCandidate, RolloutStatus, VersionRef

from .builder import Decision, evaluation_name
from .timeutil import parse_duration
from .types import CreateEvaluation, Promote, RecordRejected


def start_candidate(d: Decision) -> None:
    """The desired version becomes the candidate, with no traffic, and its evaluation starts over."""
    desired = d.inputs.desired
    d.candidate = VersionRef(version=desired.version, revision=desired.revision, since=d.now)
    d.status = RolloutStatus(phase="Evaluating", requested_by=d.status.requested_by)
    d.enter("Evaluating", f"waiting for candidate {desired.version} to be ready")
    d.event(
        "Normal",
        "RolloutStarted",
        f"candidate {desired.version} started beside stable {d.stable.version if d.stable else '-'}",
    )
    d.wait(d.inputs.settings.poll_seconds)


def new_attempt(d: Decision) -> None:
    assert d.candidate is not None and d.stable is not None
    d.status.attempts += 1
    name = evaluation_name(d.inputs.model, d.candidate.version, d.status.attempts, d.inputs.now)
    d.status.evaluation = name
    suites = tuple(d.inputs.policy.evaluation_suites) if d.inputs.policy else ()
    d.actions.append(CreateEvaluation(name, d.candidate.version, d.stable.version, suites, d.status.attempts))
    d.enter("Evaluating", f"evaluating candidate {d.candidate.version} against {d.stable.version} ({name})")
    d.wait(d.inputs.settings.poll_seconds)


def after_pass(d: Decision) -> None:
    """Walk the canary steps, or promote when there are none."""
    steps = d.inputs.policy.canary_steps if d.inputs.policy else []
    if not steps:
        promote(d, None)
        return
    assert d.candidate is not None
    d.status.step = 0
    d.enter("Canary", f"canary step 1 of {len(steps)}: {steps[0].weight}% to {d.candidate.version}")
    d.event("Normal", "CanaryStep", d.status.message)
    d.wait(parse_duration(steps[0].duration))


def promote(d: Decision, requested_by: str | None) -> None:
    """The candidate takes all traffic; the old stable drains, then goes."""
    assert d.candidate is not None and d.stable is not None
    by = f" (requested by {requested_by})" if requested_by else ""
    d.actions.append(Promote(d.candidate.version, d.stable.version, requested_by))
    d.enter("Promoting", f"promoting {d.candidate.version}{by}: all traffic to it, {d.stable.version} drains")
    d.event("Normal", "Promoting", d.status.message)
    d.wait(d.inputs.settings.drain_seconds)


def roll_back(d: Decision, reason: str) -> None:
    """Traffic back to stable, the candidate on record as rejected; it is removed after the drain."""
    assert d.candidate is not None
    entry = RejectedCandidate(version=d.candidate.version, revision=d.candidate.revision,
                              evaluation=d.status.evaluation, reason=reason[:4096], time=d.now)  # fmt: skip
    d.rejected.append(entry)
    d.actions.append(RecordRejected(entry))
    d.event("Warning", "RolledBack", f"candidate {d.candidate.version} rolled back: {reason}")
    d.enter("RollingBack", f"rolling back {d.candidate.version}: {reason}")
    d.wait(d.inputs.settings.drain_seconds)


def hold(d: Decision, reason: str, message: str) -> None:
    """Stop and wait for a person (or a spec change); say why, once as an Event."""
    previous = next(
        (c.reason for c in d.inputs.conditions if c.type == "RolloutHeld" and c.status == "True"), None
    )
    if d.phase != "Held" or previous != reason:
        d.event("Warning", reason, message)
        d.enter("Held", message)
    d.held_reason = reason
