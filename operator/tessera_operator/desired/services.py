"""Services and the PodDisruptionBudget of a Model."""

from __future__ import annotations

from typing import Any

from . import labels as L

Json = dict[str, Any]
MODEL_SERVICE_PORT = 80


def version_service(model: L.ModelRef, version: str) -> Json:
    """The Service of one version; the router discovers its EndpointSlices by name and labels."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": L.workload_name(model.name, version),
            "namespace": model.namespace,
            "labels": L.version_labels(model.name, version),
            "ownerReferences": [model.owner_reference()],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": L.serving_selector(model.name, version),
            "ports": [{"name": L.HTTP_PORT_NAME, "port": L.HTTP_PORT, "targetPort": L.HTTP_PORT_NAME, "protocol": "TCP"}],
        },
    }


def model_service(model: L.ModelRef) -> Json:
    """The Service named like the Model, selecting the serving pods of every version (for users)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": model.name,
            "namespace": model.namespace,
            "labels": L.model_labels(model.name),
            "ownerReferences": [model.owner_reference()],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": L.model_selector(model.name),
            "ports": [{"name": L.HTTP_PORT_NAME, "port": MODEL_SERVICE_PORT, "targetPort": L.HTTP_PORT_NAME, "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(model: L.ModelRef, version: str) -> Json:
    """Lets voluntary disruptions (node drains) take one pod of a version at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": L.workload_name(model.name, version),
            "namespace": model.namespace,
            "labels": L.version_labels(model.name, version),
            "ownerReferences": [model.owner_reference()],
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": L.version_selector(model.name, version)}},
    }


def endpoint(model: L.ModelRef, cluster_domain: str) -> str:
    """In-cluster base URL of the Model's OpenAI API."""
    return f"http://{model.name}.{model.namespace}.svc.{cluster_domain}/v1"
