"""The operator is quiet and restart-safe (issue 8): no write for 60 s once a Model is Ready, and a
kill mid-reconcile followed by a restart creates no duplicates and converges."""

from __future__ import annotations

import time
from typing import Any

import pytest
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    AuditLog,
    OperatorProcess,
    create_model,
    get_model,
    kube_fixture,
    load_example,
    operator_fixture,
    owned,
    tessera_crds_fixture,
    wait_condition,
    wait_until,
    write_counts,
)

from tessera_operator.desired import version_hash
from tessera_operator.devcluster.cluster import DevCluster
from tessera_operator.k8s import Kube
from tessera_operator.k8s.resources import EVENT, MODEL, Resource

pytestmark = pytest.mark.cluster
Json = dict[str, Any]
REPLICA_SET = Resource("apps/v1", "ReplicaSet", "replicasets")
# What the operator writes (the controllers write pods and the workloads' status, not these).
OPERATOR_RESOURCES = {"models", "deployments", "services", "poddisruptionbudgets", "leaderworkersets"}


def is_controller_status(write: str) -> bool:
    """A Deployment's or LWS's status subresource: the controller-manager's, not the operator's."""
    resource = write.split()[1]
    return resource.endswith("/status") and not resource.startswith("models")


def operator_events(kube: Kube, namespace: str) -> list[str]:
    return sorted(
        e["metadata"]["name"]
        for e in kube.list(EVENT, namespace)
        if e.get("reportingComponent") == "tessera-operator"
    )


@pytest.mark.slow
def test_no_writes_for_60_seconds_after_ready(
    kube: Kube, namespace: str, operator: OperatorProcess, dev_cluster: DevCluster
) -> None:
    manifest = load_example("llama-3.1-8b-gpu.yaml")
    manifest["spec"]["source"].pop("credentialsSecretRef")
    # The default `tessera` autoscaling policy stays on: its loop runs every tick and must not write
    # either. (spec.replicas is only a bound here; the policy decides the replicas.)
    manifest["spec"]["replicas"] = 2
    create_model(kube, namespace, manifest)
    name = manifest["metadata"]["name"]
    wait_condition(kube, namespace, name, "Ready", "True", "Available")
    wait_condition(kube, namespace, name, "Progressing", "False", "Available")
    time.sleep(12)  # let kopf record its last-handled configuration and two refreshes pass
    audit = AuditLog(dev_cluster)
    model_before = get_model(kube, namespace, name)
    lists_before = write_counts(kube, {"poddisruptionbudgets"}, {"LIST"})
    mark, events_before = audit.mark(), operator_events(kube, namespace)
    time.sleep(60)  # the operator refreshes every 5 s here: about 12 full reconciles
    # Counted in this namespace only: earlier tests' namespaces may still be tearing down.
    writes = [w for w in audit.writes_since(mark, namespace, OPERATOR_RESOURCES) if not is_controller_status(w)]
    events_after = operator_events(kube, namespace)
    lists_after = write_counts(kube, {"poddisruptionbudgets"}, {"LIST"})
    model_after = get_model(kube, namespace, name)
    assert operator.alive()
    assert writes == [], writes
    # The audit log does see this namespace's writes: the operator's apply of the Deployment earlier.
    assert any(w.startswith("patch deployments ") for w in audit.writes_since(0, namespace, {"deployments"}))
    assert events_after == events_before
    assert model_after["metadata"]["resourceVersion"] == model_before["metadata"]["resourceVersion"]
    # It kept reconciling while staying quiet: each reconcile lists the Model's PodDisruptionBudgets.
    assert lists_after["poddisruptionbudgets"] - lists_before["poddisruptionbudgets"] >= 8


def _one_of_each(kube: Kube, namespace: str, name: str, version: str) -> None:
    objects = owned(kube, namespace, name)
    names = sorted(d["metadata"]["name"] for d in objects["Deployment"])
    assert names == [f"{name}-{version}"], names
    assert sorted(s["metadata"]["name"] for s in objects["Service"]) == sorted([name, f"{name}-{version}"])
    replica_sets = [
        r
        for r in kube.list(REPLICA_SET, namespace, f"tessera.dev/model={name}")
        if r["spec"].get("replicas", 0) > 0
    ]
    assert len(replica_sets) == 1, [r["metadata"]["name"] for r in replica_sets]
    pods = [p for p in objects["Pod"] if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]


def test_killing_the_operator_mid_reconcile_creates_no_duplicates(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    manifest = load_example("llama-3.1-8b-gpu.yaml")
    manifest["spec"]["source"].pop("credentialsSecretRef")
    name = manifest["metadata"]["name"]
    create_model(kube, namespace, manifest)
    wait_until(
        "the first Deployment", lambda: owned(kube, namespace, name)["Deployment"], timeout=60, interval=0.05
    )
    operator.kill()  # the reconcile that created it has not written status yet (or just did)
    operator.start()
    first = version_hash(manifest["spec"])
    model = wait_condition(kube, namespace, name, "Ready", "True", "Available")
    assert model["status"]["stable"]["version"] == first
    _one_of_each(kube, namespace, name, first)

    # Again during a rollout: kill as soon as the new version's Deployment exists.
    revision = "9f0c1b2a3d4e5f60718293a4b5c6d7e8f9a0b1c2"
    kube.merge_patch(MODEL, namespace, name, {"spec": {"source": {"revision": revision}}})
    manifest["spec"]["source"]["revision"] = revision
    second = version_hash(manifest["spec"])
    wait_until(
        "the new version's Deployment",
        lambda: any(
            d["metadata"]["name"].endswith(second) for d in owned(kube, namespace, name)["Deployment"]
        ),
        timeout=60,
        interval=0.05,
    )
    operator.kill()
    operator.start()

    def promoted() -> Json | None:
        found = get_model(kube, namespace, name)
        return found if ((found.get("status") or {}).get("stable") or {}).get("version") == second else None

    wait_until("the new version to be promoted after the restart", promoted, timeout=90)

    def converged() -> bool:
        try:
            _one_of_each(kube, namespace, name, second)
        except AssertionError:
            return False
        return True

    wait_until("exactly one of each object of the new version", converged, timeout=60)
