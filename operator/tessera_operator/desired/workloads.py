"""The workload of a version: a Deployment when a replica fits on one node, a LeaderWorkerSet otherwise."""

from __future__ import annotations

from typing import Any

from tessera_operator.api.v1alpha1 import ModelSpec

from . import labels as L
from .inputs import DesiredSettings, WorkloadPlan
from .pod import pod_template, startup_budget_seconds

Json = dict[str, Any]

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_KIND = "LeaderWorkerSet"


def _metadata(model: L.ModelRef, version: str, plan: WorkloadPlan) -> Json:
    return {
        "name": L.workload_name(model.name, version),
        "namespace": model.namespace,
        "labels": L.version_labels(model.name, version),
        "annotations": {L.PLAN: plan.to_annotation()},
        "ownerReferences": [model.owner_reference()],
    }


def deployment(
    spec: ModelSpec, model: L.ModelRef, version: str, plan: WorkloadPlan, replicas: int, settings: DesiredSettings
) -> Json:
    """A Deployment of `replicas` single-node replicas.

    Updates surge one pod and never take one away before its replacement is ready: serving capacity
    never drops, at the price of needing room for one more replica.
    """
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(model, version, plan),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": L.version_selector(model.name, version)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            # Loading a big model is progress, not a stall: the deadline covers the startup budget.
            "progressDeadlineSeconds": startup_budget_seconds(plan, settings) + 600,
            "revisionHistoryLimit": 2,
            "template": pod_template(spec, model, version, plan, settings, "server"),
        },
    }


def leader_worker_set(
    spec: ModelSpec, model: L.ModelRef, version: str, plan: WorkloadPlan, replicas: int, settings: DesiredSettings
) -> Json:
    """A LeaderWorkerSet: each replica is a group of `nodesPerReplica` pods (the leader serves HTTP).

    The LeaderWorkerSet controller gives every pod LWS_LEADER_ADDRESS, LWS_WORKER_INDEX and
    LWS_GROUP_SIZE, from which `tessera-runtime vllm` builds vLLM's multi-node flags. A failed pod
    recreates its whole group (a vLLM replica cannot lose one node and keep serving).
    """
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": LWS_KIND,
        "metadata": _metadata(model, version, plan),
        "spec": {
            "replicas": replicas,
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "leaderWorkerTemplate": {
                "size": plan.plan.nodes_per_replica,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod_template(spec, model, version, plan, settings, "leader"),
                "workerTemplate": pod_template(spec, model, version, plan, settings, "worker"),
            },
        },
    }
