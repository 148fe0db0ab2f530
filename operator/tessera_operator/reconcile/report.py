"""Assembling a Model's status and the Events worth posting (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera_operator.api.v1alpha1 import ModelStatus, ResolvedPlan, TrafficWeight, VersionRef

from .conditions import ConditionValue, merge, transitions
from .versions import VersionEvent

Json = dict[str, Any]


@dataclass(frozen=True)
class StatusFacts:
    """What the status says besides conditions."""

    generation: int | None
    plan: ResolvedPlan | None
    replicas: int
    ready_replicas: int
    selector: str
    stable: str | None
    stable_revision: str | None
    candidate: str | None
    candidate_revision: str | None
    traffic: tuple[tuple[str, int], ...]
    endpoint: str | None


def _version_ref(version: str | None, revision: str | None, before: VersionRef | None, now: str) -> VersionRef | None:
    if version is None:
        return None
    if before is not None and before.version == version:
        return VersionRef(version=version, revision=before.revision if revision is None else revision, since=before.since)
    return VersionRef(version=version, revision=revision, since=now)


def build_status(old: ModelStatus, facts: StatusFacts, conditions: list[ConditionValue], now: str) -> Json:
    """The new status in wire form. Fields other parts of the operator own (autoscaling, rollout,
    rejectedCandidates) are carried over untouched."""
    status = old.model_copy(deep=True)
    status.observed_generation = facts.generation
    status.conditions = merge(old.conditions, conditions, facts.generation, now)
    status.plan = facts.plan
    status.replicas = facts.replicas
    status.ready_replicas = facts.ready_replicas
    status.selector = facts.selector
    status.stable = _version_ref(facts.stable, facts.stable_revision, old.stable, now)
    status.candidate = _version_ref(facts.candidate, facts.candidate_revision, old.candidate, now)
    status.traffic = [TrafficWeight(version=v, weight=w) for v, w in facts.traffic]
    status.endpoint = facts.endpoint
    return status.to_api()


def condition_events(old: ModelStatus, new: list[ConditionValue]) -> list[VersionEvent]:
    """Events for changed conditions: Ready changes, Degraded appearing (Warning) or clearing."""
    changed = {c.type: c for c in transitions(old.conditions, new)}
    was_degraded = any(c.type == "Degraded" and c.status == "True" for c in old.conditions)
    events: list[VersionEvent] = []
    degraded = changed.get("Degraded")
    if degraded is not None and degraded.status == "True":
        events.append(VersionEvent("Warning", degraded.reason, degraded.message))
    elif degraded is not None and was_degraded:
        events.append(VersionEvent("Normal", "Recovered", "the problem reported earlier is gone"))
    ready = changed.get("Ready")
    if ready is not None and not (degraded is not None and degraded.status == "True" and degraded.reason == ready.reason):
        kind = "Normal" if ready.status == "True" or ready.reason == "Loading" else "Warning"
        events.append(VersionEvent(kind, ready.reason, f"Ready={ready.status}: {ready.message}"))  # type: ignore[arg-type]
    return events
