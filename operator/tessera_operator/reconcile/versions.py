"""Which versions run and get traffic: the surge replacement, and the seam for gated rollouts (pure).

Without `spec.rollout`, a new version starts beside the stable one, gets no traffic while it loads,
and replaces it when all its replicas are ready: serving capacity never drops. With `spec.rollout`,
the rollout state machine (tessera_operator.rollout) plugs in here as another `VersionStrategy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from tessera_operator.api.v1alpha1 import ModelSpec, ModelStatus


@dataclass(frozen=True)
class VersionState:
    """What is observed of one version's workload."""

    version: str
    replicas: int
    """Replicas its workload asks for."""
    ready_replicas: int
    up_to_date: bool = True
    """Whether the workload controller has observed the latest workload spec."""

    @property
    def fully_ready(self) -> bool:
        """All asked-for replicas are ready (a version scaled to zero counts as ready)."""
        return self.up_to_date and self.ready_replicas >= self.replicas


@dataclass(frozen=True)
class VersionEvent:
    """An Event the decision asks to post on the Model."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class VersionContext:
    """Everything a strategy decides from."""

    spec: ModelSpec
    status: ModelStatus
    desired_version: str
    desired_feasible: bool
    """Whether the desired version has a plan (PlanInfeasible versions cannot be started)."""
    versions: dict[str, VersionState]
    """Versions whose workload exists."""
    stable: str | None
    """The stable version (from status), if its workload still exists."""


@dataclass(frozen=True)
class VersionDecision:
    """What to run: the desired version's objects are applied when `run_desired`; `delete` versions go."""

    stable: str | None
    candidate: str | None
    run_desired: bool
    delete: tuple[str, ...] = ()
    traffic: tuple[tuple[str, int], ...] = ()
    events: tuple[VersionEvent, ...] = field(default_factory=tuple)


class VersionStrategy(Protocol):
    """Decides stable, candidate, traffic and removals from the observed versions."""

    def decide(self, context: VersionContext) -> VersionDecision:
        """One decision per reconcile; must depend only on `context` (it is re-run after restarts)."""
        ...


class SurgeStrategy:
    """Start the new version beside the stable one; switch when it is fully ready; then remove the old."""

    def decide(self, context: VersionContext) -> VersionDecision:
        desired, stable = context.desired_version, context.stable
        others = [v for v in context.versions if v not in (desired, stable)]
        if stable is None or stable == desired:
            if not context.desired_feasible and stable is None:
                return VersionDecision(None, None, run_desired=False, delete=tuple(others))
            return VersionDecision(desired, None, run_desired=True, delete=tuple(others), traffic=((desired, 100),))
        if not context.desired_feasible:
            # Keep serving the stable version; drop half-started candidates of earlier specs.
            return VersionDecision(stable, None, run_desired=False, delete=tuple(others), traffic=((stable, 100),))
        candidate = context.versions.get(desired)
        if candidate is not None and candidate.fully_ready and (candidate.ready_replicas >= 1 or candidate.replicas == 0):
            return VersionDecision(
                desired, None, run_desired=True, delete=(stable, *others), traffic=((desired, 100),),
                events=(VersionEvent("Normal", "VersionPromoted",
                                     f"version {desired} is ready and now serves all traffic; removing {stable}"),),
            )
        events: tuple[VersionEvent, ...] = ()
        if candidate is None:
            events = (VersionEvent("Normal", "RolloutStarted",
                                   f"starting version {desired} beside {stable}, which keeps serving until it is ready"),)
        return VersionDecision(stable, desired, run_desired=True, delete=tuple(others),
                               traffic=((stable, 100),), events=events)


def strategy_for(spec: ModelSpec) -> VersionStrategy:
    """The strategy for a spec. Gated rollouts (spec.rollout) will plug in here; until then, surge."""
    return SurgeStrategy()
