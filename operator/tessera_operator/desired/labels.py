"""Label keys, object names and selectors shared by the operator, the router, the autoscaler and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera_operator.api.v1alpha1 import API_VERSION

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
VERSION = "app.kubernetes.io/version"
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
PART_OF = "app.kubernetes.io/part-of"
MODEL = "tessera.dev/model"
MODEL_VERSION = "tessera.dev/version"
ROLE = "tessera.dev/role"
APPLIED_HASH = "tessera.dev/applied-hash"
"""Annotation holding the hash of the desired object last applied (nothing is written while it matches)."""

PLAN = "tessera.dev/plan"
"""Annotation on a workload holding the plan its version was started with (see WorkloadPlan.to_annotation)."""

APP_NAME = "tessera-model"
MANAGER = "tessera"
COMPONENT_SERVER = "server"
COMPONENT_WORKER = "worker"
HTTP_PORT = 8000
HTTP_PORT_NAME = "http"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
LOCAL_NODE_TAINT = "tessera.dev/local-node"


@dataclass(frozen=True)
class ModelRef:
    """The identity of a Model: enough to name, label and own its objects."""

    name: str
    namespace: str
    uid: str

    @staticmethod
    def from_metadata(metadata: dict[str, Any]) -> ModelRef:
        """Read name, namespace and uid from a Model's metadata."""
        return ModelRef(str(metadata["name"]), str(metadata.get("namespace") or "default"), str(metadata.get("uid", "")))

    def owner_reference(self) -> dict[str, Any]:
        """The ownerReference that makes the garbage collector delete an object with its Model."""
        return {
            "apiVersion": API_VERSION,
            "kind": "Model",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def workload_name(model: str, version: str) -> str:
    """Name of a version's Deployment or LeaderWorkerSet, and of its Service and PodDisruptionBudget."""
    return f"{model}-{version}"


def model_labels(model: str) -> dict[str, str]:
    """Labels every object of a Model carries."""
    return {
        NAME: APP_NAME,
        INSTANCE: model,
        MANAGED_BY: MANAGER,
        COMPONENT: COMPONENT_SERVER,
        MODEL: model,
    }


def version_labels(model: str, version: str, component: str = COMPONENT_SERVER) -> dict[str, str]:
    """Labels of a version's objects and pods (workers of a multi-node replica are component=worker)."""
    return {**model_labels(model), VERSION: version, MODEL_VERSION: version, COMPONENT: component}


def model_selector(model: str) -> dict[str, str]:
    """Selects the serving pods of every version of a Model (the per-Model Service)."""
    return {MODEL: model, COMPONENT: COMPONENT_SERVER}


def version_selector(model: str, version: str) -> dict[str, str]:
    """Selects every pod of one version, workers included (workload selector, PodDisruptionBudget)."""
    return {MODEL: model, MODEL_VERSION: version}


def serving_selector(model: str, version: str) -> dict[str, str]:
    """Selects the pods of one version that answer HTTP (the per-version Service the router reads)."""
    return {**version_selector(model, version), COMPONENT: COMPONENT_SERVER}


def selector_string(labels: dict[str, str]) -> str:
    """A label selector in its string form (status.selector, `kubectl -l`)."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
