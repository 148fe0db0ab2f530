"""Reading what exists for a Model: its workloads, Services, PodDisruptionBudgets and pods."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tessera_operator.desired import ObjectKey
from tessera_operator.desired import labels as L
from tessera_operator.k8s import Kube, NotFound
from tessera_operator.k8s.resources import DEPLOYMENT, LEADER_WORKER_SET, OWNED_KINDS, POD

from .versions import VersionState

Json = dict[str, Any]
WORKLOAD_KINDS = frozenset({DEPLOYMENT.kind, LEADER_WORKER_SET.kind})


@dataclass
class Observed:
    """The objects of one Model, as they are now."""

    owned: dict[ObjectKey, Json] = field(default_factory=dict)
    pods: dict[str, list[Json]] = field(default_factory=lambda: defaultdict(list))
    leader_worker_sets_served: bool = True
    """Whether the LeaderWorkerSet API exists in the cluster (its CRD is installed)."""

    def workloads(self) -> dict[str, Json]:
        """Workloads (Deployment or LeaderWorkerSet) by version."""
        found: dict[str, Json] = {}
        for obj in self.owned.values():
            version = version_of(obj)
            if obj["kind"] in WORKLOAD_KINDS and version:
                found[version] = obj
        return found

    def of_version(self, version: str) -> list[Json]:
        """Every owned object of one version."""
        return [obj for obj in self.owned.values() if version_of(obj) == version]


def version_of(obj: Json) -> str | None:
    """The version label of an object (None for the Model-wide Service)."""
    return (obj.get("metadata", {}).get("labels") or {}).get(L.MODEL_VERSION)


def _owned_by(obj: Json, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])


def observe(kube: Kube, model: L.ModelRef) -> Observed:
    """List the Model's objects (by label, kept only when the Model owns them) and its pods."""
    selector = L.selector_string({L.MODEL: model.name, L.MANAGED_BY: L.MANAGER})
    observed = Observed()
    for resource in OWNED_KINDS:
        try:
            items = kube.list(resource, model.namespace, selector)
        except NotFound:  # the kind is not served (no LeaderWorkerSet CRD)
            if resource is LEADER_WORKER_SET:
                observed.leader_worker_sets_served = False
                continue
            raise
        for item in items:
            if _owned_by(item, model.uid):
                observed.owned[ObjectKey.of(item)] = item
    for pod in kube.list(POD, model.namespace, L.selector_string({L.MODEL: model.name})):
        version = version_of(pod)
        if version:
            observed.pods[version].append(pod)
    return observed


def version_state(workload: Json) -> VersionState:
    """Replicas asked for and ready, and whether the controller has caught up with the latest spec."""
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    generation = int(workload.get("metadata", {}).get("generation") or 0)
    if workload["kind"] == DEPLOYMENT.kind:
        up_to_date = (
            int(status.get("observedGeneration") or 0) >= generation
            and int(status.get("updatedReplicas") or 0) >= replicas
            and int(status.get("replicas") or 0) == replicas
        )
    else:
        up_to_date = int(status.get("updatedReplicas") or 0) >= replicas
    return VersionState(str(version_of(workload)), replicas, min(ready, replicas), up_to_date)
