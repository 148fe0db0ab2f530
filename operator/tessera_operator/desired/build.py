"""From a Model, its resolved plan, its version and its replica count to the objects that serve it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera_operator.api.v1alpha1 import ModelSpec

from . import labels as L
from .inputs import DesiredSettings, WorkloadPlan
from .services import model_service, pod_disruption_budget, version_service
from .workloads import deployment, leader_worker_set

Json = dict[str, Any]


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of an object inside a namespace: group/version, kind and name."""

    api_version: str
    kind: str
    name: str

    @staticmethod
    def of(obj: Json) -> ObjectKey:
        """The key of an object in wire form."""
        return ObjectKey(str(obj["apiVersion"]), str(obj["kind"]), str(obj["metadata"]["name"]))

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def version_objects(
    spec: ModelSpec, model: L.ModelRef, version: str, plan: WorkloadPlan, replicas: int, settings: DesiredSettings
) -> list[Json]:
    """The workload, Service and (with more than one replica) PodDisruptionBudget of one version."""
    build = leader_worker_set if plan.multi_node else deployment
    objects = [build(spec, model, version, plan, replicas, settings), version_service(model, version)]
    if replicas > 1:
        objects.append(pod_disruption_budget(model, version))
    return objects


def model_objects(model: L.ModelRef) -> list[Json]:
    """Objects of the Model as a whole, shared by its versions."""
    return [model_service(model)]


def desired_objects(
    spec: ModelSpec, model: L.ModelRef, version: str, plan: WorkloadPlan, replicas: int, settings: DesiredSettings
) -> list[Json]:
    """Everything one version of a Model needs, plus the Model-wide Service."""
    return [*version_objects(spec, model, version, plan, replicas, settings), *model_objects(model)]
