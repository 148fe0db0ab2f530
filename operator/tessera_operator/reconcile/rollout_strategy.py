"""The gated-rollout `VersionStrategy`: drives the pure state machine (tessera_operator.rollout) for
Models with `spec.rollout`, and does its I/O.

Per reconcile: read the evaluation's verdict (or its Job's failure), the manual-action annotation and
the versions' readiness; `decide`; then act: ensure the evaluation Job (idempotent), consume the
annotation, and hand the reconciler the versions to run and delete, the traffic weights, the Events,
and the rollout's status fields (written in the reconciler's single status write).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tessera_operator.api.v1alpha1 import ModelStatus, VersionRef
from tessera_operator.desired import DesiredSettings
from tessera_operator.desired import labels as L
from tessera_operator.k8s import Kube, KubeError
from tessera_operator.k8s.resources import MODEL
from tessera_operator.rollout import (
    CreateEvaluation,
    DeleteVersion,
    EmitEvent,
    ManualRequest,
    RolloutDecision,
    RolloutInputs,
    RolloutSettings,
    decide,
)

from .evaluation_job import ensure_evaluation_objects, evaluation_job, observe_evaluation, pod_url
from .live_checks import LiveEvidence, Scraper, default_scraper, live_evidence, with_baseline
from .observe import Observed
from .versions import VersionContext, VersionDecision, VersionEvent

Json = dict[str, Any]
log = logging.getLogger("tessera_operator.rollout")

ROLLOUT_ACTION = "tessera.dev/rollout-action"
ROLLOUT_REQUESTED_BY = "tessera.dev/rollout-requested-by"
ROLLOUT_CONDITION_TYPES = ("Progressing", "RolloutHeld")


@dataclass(frozen=True)
class RolloutVersionDecision(VersionDecision):
    """A VersionDecision plus the status fields the rollout owns (merged into the single status write)."""

    status_fields: Json = field(default_factory=dict)
    """rollout and rejectedCandidates (wire form)."""
    conditions: tuple[Json, ...] = ()
    """Progressing and RolloutHeld (wire form); merged into status.conditions by type."""
    requeue_after_s: float | None = None


def manual_request(annotations: dict[str, str]) -> ManualRequest | None:
    """The person's request in the Model's annotations, if any (unknown actions are ignored)."""
    action = annotations.get(ROLLOUT_ACTION)
    if action not in ("promote", "abort", "retry"):
        return None
    return ManualRequest(action, annotations.get(ROLLOUT_REQUESTED_BY) or "unknown")  # type: ignore[arg-type]


def merge_rollout_conditions(conditions: list[Json], rollout: tuple[Json, ...]) -> list[Json]:
    """Replace the rollout's condition types in `conditions` by the machine's, keeping the others in order."""
    types = {c["type"] for c in rollout}
    return [c for c in conditions if c.get("type") not in types] + list(rollout)


class RolloutStrategy:
    """One reconcile's view of a gated rollout (built per reconcile: it holds that run's observations)."""

    def __init__(
        self, kube: Kube, ref: L.ModelRef, observed: Observed, settings: DesiredSettings, now: datetime,
        rollout_settings: RolloutSettings | None = None, scraper: Scraper | None = None,
    ) -> None:
        self.kube = kube
        self.ref = ref
        self.observed = observed
        self.settings = settings
        self.now = now
        # A version's traffic drains as long as its terminating servers may finish in-flight streams.
        self.rollout_settings = rollout_settings or RolloutSettings(drain_seconds=float(settings.drain_seconds))
        self.scraper = scraper if scraper is not None else default_scraper
        self.evidence = LiveEvidence(None, {})

    def decide(self, context: VersionContext) -> VersionDecision:
        """Run the state machine on what is observed, act on its decision, and say what to run."""
        status = context.status
        model = self.kube.get(MODEL, self.ref.namespace, self.ref.name) or {}
        annotations = (model.get("metadata") or {}).get("annotations") or {}
        manual = manual_request(annotations)
        decision = decide(self.inputs(context, status, manual))
        events = self._act(decision)
        if ROLLOUT_ACTION in annotations:
            self._consume_annotation()
        return self._version_decision(context, decision, events)

    def inputs(self, context: VersionContext, status: ModelStatus, manual: ManualRequest | None) -> RolloutInputs:
        """The machine's inputs from the status and this reconcile's observations."""
        stable: VersionRef | None = None
        if context.stable is not None:
            recorded = status.stable if status.stable and status.stable.version == context.stable else None
            stable = recorded or VersionRef(version=context.stable)
        candidate = status.candidate
        candidate_state = context.versions.get(candidate.version) if candidate else None
        ready = candidate_state is not None and candidate_state.fully_ready and candidate_state.ready_replicas >= 1
        rollout = status.rollout
        self.evidence = live_evidence(rollout, candidate.version if candidate else None, context.stable,
                                      self.observed.pods, self.scraper)
        return RolloutInputs(
            model=self.ref.name,
            desired=VersionRef(version=context.desired_version, revision=context.spec.source.revision),
            policy=context.spec.rollout,
            now=self.now,
            stable=stable,
            candidate=candidate,
            rollout=rollout,
            rejected=tuple(status.rejected_candidates),
            candidate_ready=ready,
            evaluation=observe_evaluation(self.kube, self.ref.namespace, rollout.evaluation if rollout else None,
                                          self.now),
            live=self.evidence.observation,
            manual=manual,
            conditions=tuple(status.conditions),
            settings=self.rollout_settings,
        )

    def _act(self, decision: RolloutDecision) -> list[VersionEvent]:
        events: list[VersionEvent] = []
        for action in decision.actions:
            if isinstance(action, EmitEvent):
                events.append(VersionEvent(action.type, action.reason, action.message))
            elif isinstance(action, CreateEvaluation):
                problem = self._ensure_evaluation(action)
                if problem:
                    events.append(VersionEvent("Warning", "EvaluationNotStarted", problem))
        return events

    def _ensure_evaluation(self, action: CreateEvaluation) -> str | None:
        """Create the RBAC and the Job once; None when the Job exists (or was created)."""
        candidate_url = pod_url(self.observed.pods.get(action.candidate, []))
        baseline_url = pod_url(self.observed.pods.get(action.baseline, []))
        if candidate_url is None or baseline_url is None:
            return f"evaluation {action.name} waits for ready pods of {action.candidate} and {action.baseline}"
        job = evaluation_job(self.ref, action, candidate_url, baseline_url, self.settings,
                             self.settings.cpu_node_selector)
        if ensure_evaluation_objects(self.kube, self.ref, job, self.settings.evaluator_cluster_role):
            log.info("created evaluation Job %s/%s for %s", self.ref.namespace, job["metadata"]["name"], action.name)
        return None

    def _consume_annotation(self) -> None:
        """Remove the manual-action annotations (the request is recorded in status.rollout.requestedBy)."""
        patch: Json = {"metadata": {"annotations": {ROLLOUT_ACTION: None, ROLLOUT_REQUESTED_BY: None}}}
        try:
            self.kube.merge_patch(MODEL, self.ref.namespace, self.ref.name, patch)
        except KubeError as error:  # consumed on the next reconcile; the machine's request handling is idempotent
            log.warning("could not remove the rollout-action annotation: %s", error)

    def _version_decision(
        self, context: VersionContext, decision: RolloutDecision, events: list[VersionEvent]
    ) -> RolloutVersionDecision:
        serving = decision.serving
        deleted = [a.version for a in decision.actions if isinstance(a, DeleteVersion)]
        delete = tuple(dict.fromkeys(v for v in [*deleted, *context.versions] if v not in serving))
        rollout = with_baseline(decision.rollout, decision.candidate.version if decision.candidate else None,
                                decision.stable.version if decision.stable else None, self.observed.pods,
                                self.evidence, self.scraper)
        status_fields: Json = {
            "rollout": rollout.to_api(),
            "rejectedCandidates": [r.to_api() for r in decision.rejected],
        }
        return RolloutVersionDecision(
            stable=decision.stable.version if decision.stable else None,
            candidate=decision.candidate.version if decision.candidate else None,
            run_desired=context.desired_feasible and context.desired_version in serving,
            delete=delete,
            traffic=tuple((t.version, t.weight) for t in decision.traffic),
            events=tuple(events),
            status_fields=status_fields,
            conditions=tuple(c.to_api() for c in decision.conditions),
            requeue_after_s=decision.requeue_after_s,
        )


def parse_clock(text: str) -> datetime:
    """The reconciler's clock (RFC 3339) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
