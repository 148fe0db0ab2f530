"""One reconcile of one Model: observe, plan, build, apply, delete, write status once, post events.

Level-triggered: every run reads the current state and converges on the spec; it never depends on
which event woke it. Runs for the same Model are serialised and coalesced (a request that arrives
during a run makes the run go once more), so handlers, timers and watches may all ask freely.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tessera_operator.api.v1alpha1 import ModelSpec, ModelStatus, ResolvedPlan
from tessera_operator.desired import DesiredSettings, ModelRef, ObjectKey, WorkloadPlan, version_hash
from tessera_operator.desired import labels as L
from tessera_operator.desired.build import model_objects, version_objects
from tessera_operator.desired.services import endpoint
from tessera_operator.k8s import (
    ApplyResult,
    EventRecorder,
    Forbidden,
    Invalid,
    Kube,
    KubeError,
    apply_if_changed,
    delete_object,
    now_rfc3339,
    write_status,
)
from tessera_operator.k8s.resources import MODEL, NODE
from tessera_operator.planner import Catalogue

from . import replicas as replica_policy
from .autoscale import Autoscaler, Fleet
from .conditions import Assessment, assess
from .diagnose import Problem, version_problems
from .observe import Observed, observe, version_of, version_state
from .planning import Inventory, inventory_from_nodes, plan_version
from .report import StatusFacts, build_status, condition_events
from .rollout_strategy import RolloutStrategy, RolloutVersionDecision, merge_rollout_conditions, parse_clock
from .versions import VersionContext, VersionEvent, VersionState, VersionStrategy, strategy_for

Json = dict[str, Any]
log = logging.getLogger("tessera_operator.reconcile")
#: How long the planner's GPU inventory (a list of every node) is reused. Listing all nodes for each
#: new version cost O(nodes) per Model: at 1,000 Models on 250 nodes it was the largest read of all.
INVENTORY_TTL_SECONDS = 30.0


class RetryLater(Exception):
    """The reconcile could not finish for a reason that may pass (API trouble); try again after `delay`."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass
class ReconcileResult:
    """What one reconcile did."""

    applied: ApplyResult = field(default_factory=ApplyResult)
    status_written: bool = False
    ready: bool = False


@dataclass
class _KeyState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: bool = False
    pending: bool = False
    failures: int = 0
    finished_at: float = float("-inf")
    """time.monotonic() when the last run ended."""


@dataclass
class _Outcome:
    """What the version strategy decided, and what went wrong on the way."""

    stable: str | None
    candidate: str | None
    traffic: tuple[tuple[str, int], ...]
    events: list[VersionEvent]
    problems: list[Problem]
    rollout: RolloutVersionDecision | None = None
    """The gated rollout's decision (spec.rollout set): its status fields join the single status write."""


@dataclass
class _Desired:
    """The spec's version and its plan, or why it cannot run."""

    version: str | None
    spec: ModelSpec | None
    plan: WorkloadPlan | None
    problems: list[Problem]
    newly_planned: bool = False


class Reconciler:
    """Reconciles Models; thread-safe, one run at a time per Model."""

    def __init__(
        self,
        kube: Kube,
        settings: DesiredSettings | None = None,
        events: EventRecorder | None = None,
        *,
        clock: Callable[[], str] = now_rfc3339,
        strategy: Callable[[ModelSpec], VersionStrategy] = strategy_for,
        replicas: Callable[[ModelSpec, ModelStatus], int] = replica_policy.desired_replicas,
        observers: tuple[Callable[[Json], None], ...] = (),
        catalogue: Catalogue | None = None,
        autoscaler: Autoscaler | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings or DesiredSettings()
        self.events = events or EventRecorder(kube)
        self.clock = clock
        self.strategy = strategy
        self.replicas = replicas
        self.autoscaler = autoscaler
        """Decides replicas for policy `tessera` (None: the `replicas` seam alone)."""
        self.observers = observers
        self.catalogue = catalogue or Catalogue()
        """Called with the Model (wire form, new status) after each reconcile, e.g. the metrics collector."""
        self._guard = threading.Lock()
        self._keys: dict[tuple[str, str], _KeyState] = {}
        self._inventory: tuple[float, Inventory] | None = None

    # ------------------------------------------------------------------ entry point
    def reconcile(self, namespace: str, name: str) -> ReconcileResult | None:
        """Reconcile one Model now, or make the run in progress go once more (then returns None)."""
        with self._guard:
            state = self._keys.setdefault((namespace, name), _KeyState())
            if state.running:
                state.pending = True
                return None
            state.running = True
        try:
            while True:
                result = self._reconcile_once(namespace, name, state)
                with self._guard:
                    if not state.pending:
                        state.running = False
                        state.finished_at = time.monotonic()
                        return result
                    state.pending = False
        except BaseException:
            with self._guard:
                state.running = state.pending = False
            raise

    def reconciled_within(self, namespace: str, name: str, seconds: float) -> bool:
        """Whether a run of this Model is going on, or ended less than `seconds` ago."""
        with self._guard:
            state = self._keys.get((namespace, name))
            return state is not None and (state.running or time.monotonic() - state.finished_at < seconds)

    def running(self) -> int:
        """How many Models are being reconciled right now."""
        with self._guard:
            return sum(1 for state in self._keys.values() if state.running)

    def forget(self, namespace: str, name: str) -> None:
        """Drop the bookkeeping of a deleted Model."""
        with self._guard:
            self._keys.pop((namespace, name), None)
        if self.autoscaler is not None:
            self.autoscaler.forget(namespace, name)

    def _reconcile_once(self, namespace: str, name: str, state: _KeyState) -> ReconcileResult | None:
        try:
            result = self._reconcile(namespace, name)
        except KubeError as error:
            state.failures += 1
            delay = min(300.0, 2.0 ** min(state.failures, 8))
            log.warning("reconcile of %s/%s failed (%s); retrying in %.0f s", namespace, name, error, delay)
            raise RetryLater(str(error), delay) from error
        state.failures = 0
        return result

    # ------------------------------------------------------------------ one run
    def _reconcile(self, namespace: str, name: str) -> ReconcileResult | None:
        live = self.kube.get(MODEL, namespace, name)
        if live is None or live["metadata"].get("deletionTimestamp"):
            return None
        ref = ModelRef.from_metadata(live["metadata"])
        old_status = _lenient_status(live.get("status"))
        observed = observe(self.kube, ref)
        workloads = observed.workloads()
        versions = {v: version_state(w) for v, w in workloads.items()}
        desired = self._desired(live, observed, workloads)
        stable = old_status.stable.version if old_status.stable and old_status.stable.version in versions else None
        if stable is None and versions:
            # Status lost (a crash before the first status write): the most ready version serves;
            # among equals, the spec's own.
            stable = max(versions, key=lambda v: (versions[v].ready_replicas, v == desired.version))
        spec = desired.spec
        target = self.replicas(spec, old_status) if spec is not None else 0
        scaling = None
        if spec is not None and self.autoscaler is not None:
            scaling = self.autoscaler.scale(live, spec, old_status, _fleet(desired.version, stable, versions, observed),
                                            self.clock())
            target = scaling.replicas
        result = ReconcileResult()
        outcome = _Outcome(stable, None, ((stable, 100),) if stable else (), [], list(desired.problems))
        if spec is not None and desired.version is not None:
            self._converge(ref, spec, desired, versions, stable, target, old_status, observed, result.applied, outcome)
        decision_stable, decision_candidate, problems = outcome.stable, outcome.candidate, outcome.problems
        for shown, role in ((decision_stable, ""), (decision_candidate, "candidate ")):
            if shown is not None:
                for problem in version_problems(workloads.get(shown), observed.pods.get(shown, [])):
                    prefix = f"{role}version {shown}: " if role else ""
                    problems.append(Problem(problem.reason, prefix + problem.message))
        stable_state = versions.get(decision_stable) if decision_stable else None
        candidate_state = versions.get(decision_candidate) if decision_candidate else None
        conditions = assess(Assessment(target, stable_state, candidate_state, tuple(problems)))
        now = self.clock()
        facts = StatusFacts(
            generation=live["metadata"].get("generation"),
            plan=self._stable_plan(decision_stable, desired, workloads, old_status),
            replicas=sum(s.replicas for s in (stable_state, candidate_state) if s is not None),
            ready_replicas=sum(s.ready_replicas for s in (stable_state, candidate_state) if s is not None),
            selector=L.selector_string(L.model_selector(ref.name)),
            stable=decision_stable,
            stable_revision=spec.source.revision if spec is not None and decision_stable == desired.version else None,
            candidate=decision_candidate,
            candidate_revision=spec.source.revision if spec is not None and decision_candidate == desired.version else None,
            traffic=outcome.traffic,
            endpoint=endpoint(ref, self.settings.cluster_domain),
        )
        new_status = build_status(old_status, facts, conditions, now)
        if scaling is not None and scaling.status is not None:
            new_status["autoscaling"] = scaling.status  # in the same single status write
        if outcome.rollout is not None:
            new_status.update(outcome.rollout.status_fields)
            new_status["conditions"] = merge_rollout_conditions(new_status.get("conditions") or [],
                                                                outcome.rollout.conditions)
        if scaling is not None and scaling.event is not None:
            outcome.events.append(VersionEvent("Normal", "Scaled", scaling.event))
        result.status_written = write_status(self.kube, ref.namespace, ref.name, live.get("status"), new_status)
        result.ready = conditions[0].status == "True"
        for observe_model in self.observers:
            observe_model({**live, "status": new_status})
        for event in [*outcome.events, *condition_events(old_status, conditions)]:
            self.events.event(live, event.type, event.reason, event.message)
        if result.applied.changed or result.status_written:
            log.info("reconciled %s/%s: wrote %s, deleted %s, status %s", namespace, name, result.applied.written,
                     result.applied.deleted, "written" if result.status_written else "unchanged")
        return result

    def _converge(
        self, ref: ModelRef, spec: ModelSpec, desired: _Desired, versions: dict[str, VersionState],
        stable: str | None, target: int, old_status: ModelStatus, observed: Observed, applied: ApplyResult,
        outcome: _Outcome,
    ) -> None:
        """Let the version strategy decide, then apply the desired version and delete what goes."""
        assert desired.version is not None
        strategy = self.strategy(spec)
        if spec.rollout is not None and self.strategy is strategy_for:  # gated rollout (the default seam only)
            strategy = RolloutStrategy(self.kube, ref, observed, self.settings, parse_clock(self.clock()))
        decision = strategy.decide(VersionContext(
            spec, old_status, desired.version, desired.plan is not None, versions, stable))
        outcome.stable, outcome.candidate, outcome.traffic = decision.stable, decision.candidate, decision.traffic
        outcome.events += decision.events
        if isinstance(decision, RolloutVersionDecision):
            outcome.rollout = decision
        try:
            if decision.run_desired and desired.plan is not None:
                self._apply_version(ref, spec, desired.version, desired.plan, target, observed, applied)
                if desired.version not in versions:
                    versions[desired.version] = VersionState(desired.version, target, 0, up_to_date=False)
                    if desired.newly_planned:
                        outcome.events.append(VersionEvent(
                            "Normal", "Planned", f"version {desired.version}: {desired.plan.plan.summary}"))
            for obj in model_objects(ref):
                apply_if_changed(self.kube, obj, observed.owned.get(ObjectKey.of(obj)), applied)
            for version in decision.delete:
                for obj in observed.of_version(version):
                    delete_object(self.kube, obj, applied)
        except (Invalid, Forbidden) as error:
            outcome.problems.append(Problem("ApplyFailed", f"the apiserver refused an object: {error.message}"))

    def _desired(self, live: Json, observed: Observed, workloads: dict[str, Json]) -> _Desired:
        """Parse the spec, compute its version, and find (or make) its plan."""
        try:
            spec = ModelSpec.model_validate(live.get("spec") or {})
        except ValidationError as error:
            details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
            return _Desired(None, None, None, [Problem("InvalidSpec", f"the spec is not valid: {details}")])
        version = version_hash(spec)
        existing = workloads.get(version)
        recorded = WorkloadPlan.from_annotation(
            ((existing or {}).get("metadata", {}).get("annotations") or {}).get(L.PLAN))
        if recorded is not None:
            return _Desired(version, spec, recorded, [])
        outcome = plan_version(spec, self._gpu_inventory(), self.catalogue)
        if outcome.workload is None:
            return _Desired(version, spec, None, [Problem("PlanInfeasible", outcome.explanation)])
        if outcome.workload.multi_node and not observed.leader_worker_sets_served:
            return _Desired(version, spec, None, [Problem(
                "LeaderWorkerSetMissing",
                f"the plan needs {outcome.workload.plan.nodes_per_replica} nodes per replica "
                f"({outcome.workload.plan.summary}), which runs as a LeaderWorkerSet, but the cluster does not "
                "serve that API: install the LeaderWorkerSet controller and CRD")])
        return _Desired(version, spec, outcome.workload, [], newly_planned=True)

    def _gpu_inventory(self) -> Inventory:
        """The Ready GPU nodes, grouped for the planner; listed again after INVENTORY_TTL_SECONDS."""
        now = time.monotonic()
        cached = self._inventory
        if cached is not None and now - cached[0] < INVENTORY_TTL_SECONDS:
            return cached[1]
        inventory = inventory_from_nodes(self.kube.list(NODE), self.catalogue)
        self._inventory = (now, inventory)
        return inventory

    def _apply_version(
        self, ref: ModelRef, spec: ModelSpec, version: str, plan: WorkloadPlan, replicas: int,
        observed: Observed, result: ApplyResult,
    ) -> None:
        """Apply a version's objects and delete the ones of that version it no longer needs (a PDB at 1 replica)."""
        wanted = version_objects(spec, ref, version, plan, replicas, self.settings)
        keys = {ObjectKey.of(obj) for obj in wanted}
        for obj in wanted:
            apply_if_changed(self.kube, obj, observed.owned.get(ObjectKey.of(obj)), result)
        for obj in observed.of_version(version):
            if ObjectKey.of(obj) not in keys:
                delete_object(self.kube, obj, result)

    @staticmethod
    def _stable_plan(
        stable: str | None, desired: _Desired, workloads: dict[str, Json], old: ModelStatus
    ) -> ResolvedPlan | None:
        if stable is None:
            return None
        if stable == desired.version and desired.plan is not None:
            return desired.plan.plan
        recorded = WorkloadPlan.from_annotation(
            ((workloads.get(stable) or {}).get("metadata", {}).get("annotations") or {}).get(L.PLAN))
        return recorded.plan if recorded is not None else old.plan


def _fleet(
    version: str | None, stable: str | None, versions: dict[str, VersionState], observed: Observed
) -> Fleet | None:
    """The replicas the autoscaler moves: the spec's version when it runs, else the stable one."""
    chosen = version if version in versions else stable
    if chosen is None or chosen not in versions:
        return None
    state = versions[chosen]
    return Fleet(state.replicas, state.ready_replicas, tuple(observed.pods.get(chosen, [])))


def _lenient_status(raw: Json | None) -> ModelStatus:
    """The stored status, or an empty one when it cannot be read (it is rewritten whole anyway)."""
    try:
        return ModelStatus.model_validate(raw or {})
    except ValidationError:
        log.warning("ignoring an unreadable Model status")
        return ModelStatus()


__all__ = ["ReconcileResult", "Reconciler", "RetryLater", "version_of"]
