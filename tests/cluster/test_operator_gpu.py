"""The operator against the real control plane with kwok GPU nodes (issue 8): placement, status,
infeasible and unschedulable Models and their recovery, rollouts, deletion."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    OperatorProcess,
    condition,
    create_model,
    get_model,
    kube_fixture,
    leader_worker_set_crd_fixture,
    load_example,
    node_of,
    operator_fixture,
    owned,
    tessera_crds_fixture,
    wait_condition,
    wait_until,
)

from tessera_operator.desired import version_hash
from tessera_operator.k8s import Kube
from tessera_operator.k8s.resources import EVENT, MODEL, Resource

pytestmark = pytest.mark.cluster
Json = dict[str, Any]
SECRET = Resource("v1", "Secret", "secrets")


def hf_secret(kube: Kube, namespace: str) -> None:
    kube.create(
        SECRET,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf-token"},
            "stringData": {"token": "hf_test_token"},
        },
    )


def live_pods(objects: dict[str, list[Json]]) -> list[Json]:
    return [p for p in objects["Pod"] if not p["metadata"].get("deletionTimestamp")]


def engine(pod_spec: Json) -> Json:
    return next(c for c in pod_spec["containers"] if c["name"] == "engine")  # type: ignore[no-any-return]


def events_of(kube: Kube, namespace: str, name: str) -> list[Json]:
    return [
        e
        for e in kube.list(EVENT, namespace)
        if e["involvedObject"].get("name") == name and e.get("reportingComponent") == "tessera-operator"
    ]


def test_8b_example_lands_on_one_h100_with_the_planned_gpus(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    hf_secret(kube, namespace)
    manifest = load_example("llama-3.1-8b-gpu.yaml")
    create_model(kube, namespace, manifest)
    model = wait_condition(kube, namespace, "llama-3-1-8b", "Ready", "True", "Available")
    status = model["status"]
    version = version_hash(manifest["spec"])
    assert status["plan"]["accelerator"] == "H100-80GB"
    assert status["stable"]["version"] == version
    assert status["traffic"] == [{"version": version, "weight": 100}]
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
    assert "tessera.dev/model=llama-3-1-8b" in status["selector"]
    assert status["endpoint"] == f"http://llama-3-1-8b.{namespace}.svc.cluster.local/v1"
    assert condition(model, "Degraded")["status"] == "False"  # type: ignore[index]
    assert condition(model, "Progressing")["reason"] == "Available"  # type: ignore[index]

    objects = owned(kube, namespace, "llama-3-1-8b")
    assert [d["metadata"]["name"] for d in objects["Deployment"]] == [f"llama-3-1-8b-{version}"]
    assert sorted(s["metadata"]["name"] for s in objects["Service"]) == [
        "llama-3-1-8b",
        f"llama-3-1-8b-{version}",
    ]
    assert objects["PodDisruptionBudget"] == []
    uid = model["metadata"]["uid"]
    for obj in objects["Deployment"] + objects["Service"]:
        assert [ref["uid"] for ref in obj["metadata"]["ownerReferences"]] == [uid]
    pods = live_pods(objects)
    assert len(pods) == 1
    node = node_of(kube, pods[0]["spec"]["nodeName"])
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    limits = engine(pods[0]["spec"])["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == str(status["plan"]["gpusPerReplica"])
    reasons = {e["reason"] for e in events_of(kube, namespace, "llama-3-1-8b")}
    assert {"Planned", "Available"} <= reasons


def test_70b_example_is_sharded_as_planned(kube: Kube, namespace: str, operator: OperatorProcess) -> None:
    hf_secret(kube, namespace)
    create_model(kube, namespace, load_example("llama-3.1-70b-sharded.yaml"))
    model = wait_condition(kube, namespace, "llama-3-1-70b", "Ready", "True", "Available")
    plan = model["status"]["plan"]
    assert plan["gpusPerReplica"] > 1 and plan["accelerator"] in ("H100-80GB", "A100-80GB")
    assert plan["gpusPerReplica"] == plan["tensorParallel"] * plan["pipelineParallel"]
    assert plan["nodesPerReplica"] == 1  # 8-GPU nodes hold a 70B replica
    pods = live_pods(owned(kube, namespace, "llama-3-1-70b"))
    assert len(pods) == 1
    container = engine(pods[0]["spec"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(plan["gpusPerReplica"])
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == str(plan["tensorParallel"])
    assert args[args.index("--max-model-len") + 1] == "32768"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 2 * plan["estimatedLoadSeconds"]
    product = node_of(kube, pods[0]["spec"]["nodeName"])["metadata"]["labels"]["nvidia.com/gpu.product"]
    assert ("H100" if plan["accelerator"].startswith("H100") else "A100") in product


def test_a_replica_spanning_two_nodes_becomes_a_leader_worker_set(
    kube: Kube, namespace: str, operator: OperatorProcess, leader_worker_set_crd: None
) -> None:
    manifest = load_example("llama-3.1-8b-gpu.yaml")
    manifest["metadata"]["name"] = "llama-pp2"
    manifest["spec"]["source"].pop("credentialsSecretRef")
    manifest["spec"]["placement"] = {"accelerators": ["L4"], "pipelineParallel": 2, "maxModelLen": 8192}
    del manifest["spec"]["slo"]  # two L4s in a pipeline miss its 50 ms per token
    create_model(kube, namespace, manifest)
    model = wait_condition(kube, namespace, "llama-pp2", "Progressing", "True", "Loading")
    plan = model["status"]["plan"]
    assert (plan["accelerator"], plan["nodesPerReplica"], plan["pipelineParallel"]) == ("L4", 2, 2)
    objects = owned(kube, namespace, "llama-pp2")
    assert objects["Deployment"] == []
    [lws] = objects["LeaderWorkerSet"]
    template = lws["spec"]["leaderWorkerTemplate"]
    assert (lws["spec"]["replicas"], template["size"]) == (1, 2)
    for role in ("leaderTemplate", "workerTemplate"):
        container = engine(template[role]["spec"])
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["args"][container["args"].index("--pipeline-parallel-size") + 1] == "2"
    # No LeaderWorkerSet controller runs here: the Model says it is waiting, not that it is ready.
    assert condition(model, "Ready")["status"] == "False"  # type: ignore[index]


def test_impossible_model_is_plan_infeasible_and_recovers_when_fixed(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    manifest = load_example("llama-3.1-70b-sharded.yaml")
    manifest["metadata"]["name"] = "too-big"
    manifest["spec"]["source"].pop("credentialsSecretRef")
    manifest["spec"]["placement"] = {"accelerators": ["L4"], "quantization": "none", "maxModelLen": 131072}
    create_model(kube, namespace, manifest)
    model = wait_condition(kube, namespace, "too-big", "Degraded", "True", "PlanInfeasible")
    assert condition(model, "Ready")["reason"] == "PlanInfeasible"  # type: ignore[index]
    assert "No plan fits" in condition(model, "Degraded")["message"]  # type: ignore[index]
    assert owned(kube, namespace, "too-big")["Deployment"] == []
    kube.merge_patch(
        MODEL,
        namespace,
        "too-big",
        {
            "spec": {
                "placement": {
                    "accelerators": ["H100-80GB", "A100-80GB"],
                    "quantization": None,
                    "maxModelLen": 32768,
                }
            }
        },
    )
    model = wait_condition(kube, namespace, "too-big", "Ready", "True", "Available")
    assert condition(model, "Degraded")["status"] == "False"  # type: ignore[index]
    assert any(e["reason"] == "Recovered" for e in events_of(kube, namespace, "too-big"))


def test_more_gpus_than_free_is_unschedulable_and_recovers(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    manifest = load_example("llama-3.1-8b-gpu.yaml")
    manifest["metadata"]["name"] = "greedy"
    manifest["spec"]["source"].pop("credentialsSecretRef")
    manifest["spec"]["placement"] = {"accelerators": ["H100-80GB"], "tensorParallel": 8, "maxModelLen": 16384}
    manifest["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 3, "policy": "static"}
    manifest["spec"]["replicas"] = 3  # 3 x 8 GPUs; the cluster has two 8-GPU H100 nodes
    create_model(kube, namespace, manifest)
    model = wait_condition(kube, namespace, "greedy", "Degraded", "True", "Unschedulable")
    message = condition(model, "Degraded")["message"]  # type: ignore[index]
    assert "Insufficient nvidia.com/gpu" in message, message
    kube.merge_patch(MODEL, namespace, "greedy", {"spec": {"replicas": 1}})
    model = wait_condition(kube, namespace, "greedy", "Degraded", "False")
    assert condition(model, "Ready")["status"] == "True"  # type: ignore[index]
    assert model["status"]["replicas"] == 1


def test_revision_change_rolls_out_a_new_version_but_max_replicas_change_restarts_nothing(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    manifest = load_example("llama-3.1-8b-gpu.yaml")
    manifest["spec"]["source"].pop("credentialsSecretRef")
    create_model(kube, namespace, manifest)
    name = manifest["metadata"]["name"]
    wait_condition(kube, namespace, name, "Ready", "True", "Available")
    before = owned(kube, namespace, name)
    [pod_before] = live_pods(before)
    [deployment_before] = before["Deployment"]

    kube.merge_patch(MODEL, namespace, name, {"spec": {"autoscaling": {"maxReplicas": 3}}})
    wait_condition(kube, namespace, name, "Ready", "True", "Available")
    time.sleep(12)  # two refresh periods
    after = owned(kube, namespace, name)
    assert [p["metadata"]["uid"] for p in live_pods(after)] == [pod_before["metadata"]["uid"]]
    [deployment_after] = after["Deployment"]
    assert deployment_after["metadata"]["generation"] == deployment_before["metadata"]["generation"]

    old_version = version_hash(manifest["spec"])
    changed = copy.deepcopy(manifest["spec"])
    changed["source"]["revision"] = "5206a32e0bd3067aef1ce90f5528ade7d866253f"
    new_version = version_hash(changed)
    assert new_version != old_version
    kube.merge_patch(
        MODEL, namespace, name, {"spec": {"source": {"revision": changed["source"]["revision"]}}}
    )
    ready_pods_seen: list[int] = []

    def promoted() -> Json | None:
        model = get_model(kube, namespace, name)
        pods = live_pods(owned(kube, namespace, name))
        ready_pods_seen.append(
            sum(
                1
                for p in pods
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (p.get("status") or {}).get("conditions") or []
                )
            )
        )
        stable = (model.get("status") or {}).get("stable") or {}
        return model if stable.get("version") == new_version else None

    model = wait_until("the new version to be promoted", promoted, timeout=90, interval=0.2)
    assert min(ready_pods_seen) >= 1  # some version served throughout
    assert model["status"]["stable"]["revision"] == changed["source"]["revision"]
    assert model["status"]["traffic"] == [{"version": new_version, "weight": 100}]

    def old_gone() -> bool:
        objects = owned(kube, namespace, name)
        versions = {
            o["metadata"]["labels"]["tessera.dev/version"]
            for kind in ("Deployment", "Pod")
            for o in objects[kind]
        }
        return versions == {new_version}

    wait_until("the old version's Deployment and pods to be removed", old_gone, timeout=60)
    reasons = [e["reason"] for e in events_of(kube, namespace, name)]
    assert "RolloutStarted" in reasons and "VersionPromoted" in reasons


def test_deleting_a_model_removes_everything_it_owned(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    manifest = load_example("llama-3.1-8b-gpu.yaml")
    manifest["spec"]["source"].pop("credentialsSecretRef")
    manifest["spec"]["autoscaling"]["policy"] = "static"  # replicas from spec.replicas
    manifest["spec"]["replicas"] = 2  # also a PodDisruptionBudget
    create_model(kube, namespace, manifest)
    name = manifest["metadata"]["name"]
    wait_condition(kube, namespace, name, "Ready", "True", "Available")
    objects = owned(kube, namespace, name)
    assert len(objects["PodDisruptionBudget"]) == 1 and len(live_pods(objects)) == 2
    kube.delete(MODEL, namespace, name)
    wait_until("the Model to be gone", lambda: kube.get(MODEL, namespace, name) is None, timeout=60)

    def nothing_left() -> bool:
        return all(not items for items in owned(kube, namespace, name).values())

    wait_until("every owned object to be garbage-collected", nothing_left, timeout=90)
