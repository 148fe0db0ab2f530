"""The Ready, Progressing and Degraded conditions of a Model, from what was observed (pure).

Ready: the Model answers requests (some replica of the stable version is ready, or it is scaled to
zero and the router will start one). Progressing: the Model is moving towards its spec (loading,
scaling, rolling out). Degraded: something needs a person (PlanInfeasible, Unschedulable,
FetchFailed, CrashLooping, ...), with the message saying what and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera_operator.api.v1alpha1 import Condition

from .diagnose import Problem, most_severe
from .versions import VersionState

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


@dataclass(frozen=True)
class ConditionValue:
    """A condition without its bookkeeping (transition time, generation)."""

    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class Assessment:
    """What the reconcile saw, reduced to what the conditions need."""

    target_replicas: int
    stable: VersionState | None
    candidate: VersionState | None
    problems: tuple[Problem, ...] = ()


def _summary(problems: list[Problem], limit: int = 3) -> str:
    worst = most_severe(problems)
    assert worst is not None
    others = [p.message for p in problems if p is not worst][: limit - 1]
    text = worst.message
    if others:
        text += " Also: " + " ".join(others)
    return text


def assess(a: Assessment) -> list[ConditionValue]:
    """The three conditions, in a fixed order."""
    problems = list(a.problems)
    blocking = [p for p in problems if p.blocking]
    worst = most_severe(blocking)
    stable, candidate = a.stable, a.candidate

    if stable is not None and stable.ready_replicas >= 1:
        ready = ConditionValue("Ready", "True", "Available",
                               f"{stable.ready_replicas} of {stable.replicas} replicas of version {stable.version} ready")
    elif stable is not None and stable.replicas == 0 and a.target_replicas == 0:
        ready = ConditionValue("Ready", "True", "ScaledToZero",
                               f"version {stable.version} is scaled to zero; the router holds the first request "
                               "while a replica starts")
    elif problems:
        first = most_severe(problems)
        assert first is not None
        ready = ConditionValue("Ready", "False", first.reason, _summary(problems))
    else:
        ready = ConditionValue("Ready", "False", "Loading", "waiting for the first replica to be scheduled and start")

    if worst is not None:
        degraded = ConditionValue("Degraded", "True", worst.reason, _summary(blocking))
    else:
        degraded = ConditionValue("Degraded", "False", "AsExpected", "no problem found")

    converged = (
        stable is not None and candidate is None and stable.fully_ready and stable.replicas == a.target_replicas
    )
    if converged:
        assert stable is not None
        progressing = ConditionValue("Progressing", "False", "Available",
                                     f"version {stable.version} runs {stable.replicas} of {a.target_replicas} "
                                     "replicas, all ready")
    elif worst is not None:
        progressing = ConditionValue("Progressing", "False", worst.reason,
                                     f"blocked by {worst.reason}: see the Degraded condition")
    elif candidate is not None:
        progressing = ConditionValue("Progressing", "True", "RollingOut",
                                     f"version {candidate.version} is starting ({candidate.ready_replicas} of "
                                     f"{candidate.replicas} replicas ready) beside version "
                                     f"{stable.version if stable else '?'}, which keeps serving")
    elif stable is not None and stable.replicas != a.target_replicas:
        progressing = ConditionValue("Progressing", "True", "Scaling",
                                     f"scaling version {stable.version} from {stable.replicas} to {a.target_replicas} replicas")
    else:
        loading = next((p for p in problems if p.reason == "Loading"), None)
        progressing = ConditionValue("Progressing", "True", "Loading",
                                     loading.message if loading else "waiting for replicas to become ready")
    return [ready, progressing, degraded]


def merge(old: list[Condition], new: list[ConditionValue], generation: int | None, now: str) -> list[Condition]:
    """Conditions with lastTransitionTime kept from `old` while a condition's status is unchanged."""
    previous = {c.type: c for c in old}
    merged = []
    for value in new:
        before = previous.get(value.type)
        since = before.last_transition_time if before is not None and before.status == value.status else now
        merged.append(Condition(
            type=value.type, status=value.status, reason=value.reason, message=value.message[:32768],  # type: ignore[arg-type]
            observed_generation=generation, last_transition_time=since,
        ))
    return merged


def transitions(old: list[Condition], new: list[ConditionValue]) -> list[ConditionValue]:
    """Conditions whose status or reason changed (each is worth an Event)."""
    previous = {c.type: (c.status, c.reason) for c in old}
    return [v for v in new if previous.get(v.type) != (v.status, v.reason)]
