"""The operator's Prometheus metrics: every Model's status as gauges (`tessera_model_*`).

The dashboard and alerts of the Helm chart read these (docs/observability.md). They are derived
from Model.status only, so they say exactly what `kubectl get model -o yaml` says: the operator
calls `ModelMetrics.observe(model)` with each Model it has reconciled (wire form, status included)
and `forget` when a Model is deleted; a scrape renders the latest objects. No I/O here but
`serve`, which starts the HTTP endpoint on the metrics port.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")
CONDITION_STATUSES = ("True", "False", "Unknown")
ROLLOUT_PHASES = ("Idle", "Evaluating", "Canary", "Promoting", "RollingBack", "Held", "Completed")
METRIC_NAMES = (
    "tessera_model_replicas",
    "tessera_model_ready_replicas",
    "tessera_model_desired_replicas",
    "tessera_model_condition",
    "tessera_model_rollout_phase",
    "tessera_model_traffic_weight",
    "tessera_model_cost_per_hour",
)
"""Every series the operator exports (the chart's dashboard and alerts use no other tessera_model_*)."""


class ModelMetrics(Collector):
    """A collector of the latest status of every Model the operator reconciled."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._models: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, model: Mapping[str, Any]) -> None:
        """Remember a Model as last seen (its status is what the next scrape shows)."""
        metadata = model.get("metadata") or {}
        key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        with self._lock:
            self._models[key] = model

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted Model's series."""
        with self._lock:
            self._models.pop((namespace, name), None)

    def describe(self) -> list[Any]:
        """No fixed description: the series depend on the Models."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One family per metric, one series per Model (and per condition, phase or version)."""
        with self._lock:
            models = sorted(self._models.items())
        labels = ["namespace", "model"]
        replicas = GaugeMetricFamily("tessera_model_replicas", "Replicas of the Model's current versions.", labels=labels)
        ready = GaugeMetricFamily("tessera_model_ready_replicas", "Replicas ready to serve.", labels=labels)
        desired = GaugeMetricFamily("tessera_model_desired_replicas", "Replicas the autoscaler asked for.",
                                    labels=labels)
        condition = GaugeMetricFamily("tessera_model_condition", "1 for each condition's current status.",
                                      labels=[*labels, "type", "status"])
        phase = GaugeMetricFamily("tessera_model_rollout_phase", "1 for the rollout's current phase.",
                                  labels=[*labels, "phase"])
        weight = GaugeMetricFamily("tessera_model_traffic_weight", "Percent of requests routed to each version.",
                                   labels=[*labels, "version"])
        cost = GaugeMetricFamily("tessera_model_cost_per_hour",
                                 "Estimated USD per hour: replicas times the plan's cost per replica-hour.",
                                 labels=labels)
        for (namespace, name), model in models:
            status = model.get("status") or {}
            base = [namespace, name]
            replicas.add_metric(base, float(status.get("replicas") or 0))
            ready.add_metric(base, float(status.get("readyReplicas") or 0))
            desired.add_metric(base, float((status.get("autoscaling") or {}).get("desiredReplicas") or 0))
            current = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
            for kind in CONDITION_TYPES:
                for value in CONDITION_STATUSES:
                    condition.add_metric([*base, kind, value], 1.0 if current.get(kind) == value else 0.0)
            now = (status.get("rollout") or {}).get("phase", "Idle")
            for name_of_phase in ROLLOUT_PHASES:
                phase.add_metric([*base, name_of_phase], 1.0 if now == name_of_phase else 0.0)
            for entry in status.get("traffic") or []:
                weight.add_metric([*base, str(entry.get("version", ""))], float(entry.get("weight") or 0))
            per_replica = (status.get("plan") or {}).get("costPerHour")
            if per_replica is not None:
                cost.add_metric(base, float(per_replica) * float(status.get("replicas") or 0))
        yield from (replicas, ready, desired, condition, phase, weight, cost)


def serve(port: int, host: str | None = None, registry: CollectorRegistry | None = None) -> ModelMetrics:
    """Start the /metrics endpoint on its own thread; returns the collector to feed.

    The address defaults to the pod's IP ($POD_IP, set by the chart), else every interface: on the
    local development node all pods share this machine's ports, so a wildcard bind would take the
    port from every other pod.
    """
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    metrics = ModelMetrics(registry)
    start_http_server(port, addr=host or os.environ.get("POD_IP") or "0.0.0.0", registry=registry)
    return metrics
