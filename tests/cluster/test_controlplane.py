"""The local control plane is a real Kubernetes: CRDs with CEL, the scheduler with GPU resources,
the controller-manager, RBAC, and durable state across an apiserver restart (issue 4)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_helpers import GPU_TOLERATION, RESTRICTED_CONTAINER, deployment_manifest, wait_until
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tessera_operator.devcluster.cluster import DevCluster
from tessera_operator.devcluster.kubeclient import api_client

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "tessera.dev", "v1alpha1"
H100 = "NVIDIA-H100-80GB-HBM3"


def _crd_files() -> list[Path]:
    files = sorted((REPO / "crds").glob("*.yaml"))
    assert files, "crds/ holds no CRD"
    return files


@pytest.fixture(scope="module")
def tessera_crds(kube_api: k8s.ApiClient) -> dict[str, Any]:
    """Apply every CRD in crds/ and wait until each is Established; returns them by plural."""
    ext: Any = k8s.ApiextensionsV1Api(kube_api)
    applied: dict[str, Any] = {}
    for path in _crd_files():
        crd = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as error:
            if error.status != 409:
                raise
        applied[crd["spec"]["names"]["plural"]] = crd

    def established() -> bool:
        for crd in applied.values():
            conditions = ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_until("CRDs Established", established, timeout=30)
    return applied


def _example_model(name: str) -> dict[str, Any]:
    model: dict[str, Any] = yaml.safe_load((REPO / "examples" / "smollm2-cpu.yaml").read_text())
    model["metadata"] = {"name": name}
    return model


def _cel_message(crd: dict[str, Any], rule: str) -> str:
    """The message of the CEL rule `rule` anywhere in the CRD's schema."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for entry in node.get("x-kubernetes-validations", []):
                if entry.get("rule") == rule:
                    found.append(entry["message"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(crd)
    assert found, f"no CEL rule {rule!r} in the CRD"
    return found[0]


def test_crds_are_accepted_and_the_apiserver_rejects_min_above_max_replicas(
    tessera_crds: dict[str, Any], kube_api: k8s.ApiClient, namespace: str
) -> None:
    ext: Any = k8s.ApiextensionsV1Api(kube_api)
    for crd in tessera_crds.values():
        conditions = ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
        assert not any(c.type == "NonStructuralSchema" and c.status == "True" for c in conditions)
    assert "models" in tessera_crds
    custom: Any = k8s.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "models", _example_model("fine"))

    bad = _example_model("upside-down")
    bad["spec"]["autoscaling"] = {"minReplicas": 3, "maxReplicas": 2}
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "models", bad)
    assert rejected.value.status == 422
    message = _cel_message(tessera_crds["models"], "self.minReplicas <= self.maxReplicas")
    assert message in str(rejected.value.body)


def _gpu_deployment(name: str, gpus: int) -> dict[str, Any]:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "nvidia.com/gpu.product", "operator": "In", "values": [H100]}
                        ]
                    }
                ]
            }
        }
    }
    spec = {
        "containers": [
            {
                "name": "engine",
                "image": "ghcr.io/tessera-dev/tessera-runtime:test",
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                "securityContext": RESTRICTED_CONTAINER,
            }
        ],
        "affinity": affinity,
        "tolerations": [GPU_TOLERATION],
    }
    return deployment_manifest(name, 1, spec)


def test_eight_gpu_pod_lands_on_an_h100_node_and_nine_stay_pending(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    apps: Any = k8s.AppsV1Api(kube_api)
    core: Any = k8s.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, _gpu_deployment("fits", 8))
    apps.create_namespaced_deployment(namespace, _gpu_deployment("too-big", 9))

    wait_until(
        "deployment fits Ready",
        lambda: apps.read_namespaced_deployment("fits", namespace).status.ready_replicas == 1,
    )
    pod = core.list_namespaced_pod(namespace, label_selector="app=fits").items[0]
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == H100
    assert node.status.capacity["nvidia.com/gpu"] == "8"

    def failed_scheduling() -> list[Any]:
        events = core.list_namespaced_event(namespace, field_selector="reason=FailedScheduling").items
        return [e for e in events if e.involved_object.name.startswith("too-big-")]

    event = wait_until("FailedScheduling for the 9-GPU pod", failed_scheduling)[0]
    assert "nvidia.com/gpu" in event.message
    big = core.list_namespaced_pod(namespace, label_selector="app=too-big").items[0]
    assert big.status.phase == "Pending" and big.spec.node_name is None


def test_controller_manager_makes_replicasets_collects_garbage_and_completes_jobs(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    apps: Any = k8s.AppsV1Api(kube_api)
    core: Any = k8s.CoreV1Api(kube_api)
    batch: Any = k8s.BatchV1Api(kube_api)
    edge = {"nodeSelector": {"tessera.dev/node-class": "edge"}}
    worker = {
        "name": "main",
        "image": "ghcr.io/tessera-dev/tessera-runtime:test",
        "securityContext": RESTRICTED_CONTAINER,
    }
    apps.create_namespaced_deployment(
        namespace, deployment_manifest("web", 2, {"containers": [worker]} | edge)
    )

    def owned_replica_set() -> Any:
        sets = apps.list_namespaced_replica_set(namespace).items
        return next((rs for rs in sets if rs.metadata.owner_references[0].name == "web"), None)

    replica_set = wait_until("a ReplicaSet owned by the Deployment", owned_replica_set)
    wait_until(
        "2 ready replicas",
        lambda: apps.read_namespaced_deployment("web", namespace).status.ready_replicas == 2,
    )
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert all(p.metadata.owner_references[0].uid == replica_set.metadata.uid for p in pods)

    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_until(
        "ReplicaSet and Pods garbage-collected",
        lambda: (
            not apps.list_namespaced_replica_set(namespace).items
            and not core.list_namespaced_pod(namespace, label_selector="app=web").items
        ),
    )

    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"containers": [worker], "restartPolicy": "Never"} | edge}},
    }
    batch.create_namespaced_job(namespace, job)
    done = wait_until(
        "the Job to complete", lambda: batch.read_namespaced_job("once", namespace).status.succeeded
    )
    assert done == 1
    conditions = batch.read_namespaced_job("once", namespace).status.conditions or []
    assert any(c.type == "Complete" and c.status == "True" for c in conditions)


def test_service_account_without_rights_is_forbidden_on_models(
    tessera_crds: dict[str, Any], dev_cluster: DevCluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    core: Any = k8s.CoreV1Api(kube_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    token = core.create_namespaced_service_account_token("nobody", namespace, request).status.token

    config = copy.copy(kube_api.configuration)
    config.api_key = {"authorization": f"Bearer {token}"}
    config.cert_file = config.key_file = None
    with k8s.ApiClient(config) as as_nobody:
        with pytest.raises(ApiException) as forbidden:
            k8s.CustomObjectsApi(as_nobody).list_namespaced_custom_object(GROUP, VERSION, namespace, "models")
        assert forbidden.value.status == 403
        assert f"system:serviceaccount:{namespace}:nobody" in str(forbidden.value.body)
    # The admin may: the 403 is RBAC, not a missing resource.
    k8s.CustomObjectsApi(kube_api).list_namespaced_custom_object(GROUP, VERSION, namespace, "models")


def _snapshot(kubeconfig: Path, namespace: str) -> dict[str, set[tuple[str, str]]]:
    with api_client(kubeconfig) as api:
        core: Any = k8s.CoreV1Api(api)
        apps: Any = k8s.AppsV1Api(api)
        custom: Any = k8s.CustomObjectsApi(api)
        listed = {
            "configmaps": core.list_namespaced_config_map(namespace).items,
            "secrets": core.list_namespaced_secret(namespace).items,
            "deployments": apps.list_namespaced_deployment(namespace).items,
            "replicasets": apps.list_namespaced_replica_set(namespace).items,
            "pods": core.list_namespaced_pod(namespace).items,
            "nodes": core.list_node().items,
        }
        snapshot = {
            kind: {(o.metadata.name, o.metadata.uid) for o in items} for kind, items in listed.items()
        }
        models = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "models")["items"]
        snapshot["models"] = {(m["metadata"]["name"], m["metadata"]["uid"]) for m in models}
    return snapshot


def test_restarting_the_apiserver_keeps_every_object(
    tessera_crds: dict[str, Any], dev_cluster: DevCluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    core: Any = k8s.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "key"}, "stringData": {"k": "v"}})
    k8s.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "models", _example_model("kept")
    )
    edge = {"nodeSelector": {"tessera.dev/node-class": "edge"}}
    worker = {
        "name": "main",
        "image": "ghcr.io/tessera-dev/tessera-runtime:test",
        "securityContext": RESTRICTED_CONTAINER,
    }
    apps: Any = k8s.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(
        namespace, deployment_manifest("kept", 1, {"containers": [worker]} | edge)
    )
    wait_until(
        "deployment Ready",
        lambda: apps.read_namespaced_deployment("kept", namespace).status.ready_replicas == 1,
    )
    before = _snapshot(dev_cluster.kubeconfig, namespace)
    old_pid = dev_cluster.state().processes["kube-apiserver"].pid  # type: ignore[union-attr]

    dev_cluster.restart_component("kube-apiserver")

    assert dev_cluster.state().processes["kube-apiserver"].pid != old_pid  # type: ignore[union-attr]
    after = _snapshot(dev_cluster.kubeconfig, namespace)
    assert after == before
    assert len(before["nodes"]) >= 11 and ("kept", next(iter(before["models"]))[1]) in after["models"]
