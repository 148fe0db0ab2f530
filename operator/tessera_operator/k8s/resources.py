"""The kinds the operator reads and writes, and their REST paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    """One API resource: group/version, kind and plural (all the operator's kinds are namespaced but Node)."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """REST path of the collection or of one object (and its subresource)."""
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


MODEL = Resource("tessera.dev/v1alpha1", "Model", "models")
DEPLOYMENT = Resource("apps/v1", "Deployment", "deployments")
LEADER_WORKER_SET = Resource("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "leaderworkersets")
SERVICE = Resource("v1", "Service", "services")
POD_DISRUPTION_BUDGET = Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
POD = Resource("v1", "Pod", "pods")
NODE = Resource("v1", "Node", "nodes", namespaced=False)
EVENT = Resource("v1", "Event", "events")
CUSTOM_RESOURCE_DEFINITION = Resource(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False
)

KNOWN: dict[tuple[str, str], Resource] = {
    (r.api_version, r.kind): r
    for r in (MODEL, DEPLOYMENT, LEADER_WORKER_SET, SERVICE, POD_DISRUPTION_BUDGET, POD, NODE, EVENT,
              CUSTOM_RESOURCE_DEFINITION)
}

OWNED_KINDS: tuple[Resource, ...] = (DEPLOYMENT, LEADER_WORKER_SET, SERVICE, POD_DISRUPTION_BUDGET)
"""Kinds the operator creates for a Model (deleted when no longer desired)."""


def resource_of(obj: dict[str, Any]) -> Resource:
    """The resource of an object in wire form."""
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    if key not in KNOWN:
        raise KeyError(f"unknown kind {key[1]} ({key[0]})")
    return KNOWN[key]

# Gated rollouts: the evaluation Job, the ServiceAccount and RoleBinding it runs under, and its record.
JOB = Resource("batch/v1", "Job", "jobs")
SERVICE_ACCOUNT = Resource("v1", "ServiceAccount", "serviceaccounts")
ROLE_BINDING = Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
MODEL_EVALUATION = Resource("tessera.dev/v1alpha1", "ModelEvaluation", "modelevaluations")
