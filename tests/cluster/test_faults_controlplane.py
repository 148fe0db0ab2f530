"""Faults of the platform under the operator (issue 14): the apiserver and etcd restart in the middle
of a reconcile, and a GPU node goes NotReady (kwok lets go of it and its Ready condition turns False).

The operator must ride out the restarts (still running, not crash-looping) and converge, and the
failed node's pods must be replaced on another node when there is room, or the Model must say
`Unschedulable` when there is none, and recover when the node comes back.
"""

from __future__ import annotations

import pytest
from fault_helpers import (
    FAST_EVICTION,
    assert_no_duplicate_workloads,
    end_state,
    failed_nodes,
    gpu_model,
    is_ready,
    serving_pods,
)
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    OperatorProcess,
    create_model,
    get_model,
    kube_fixture,
    operator_fixture,
    owned,
    tessera_crds_fixture,
    wait_condition,
    wait_until,
)

from tessera_operator.devcluster.cluster import DevCluster
from tessera_operator.k8s import Kube
from tessera_operator.k8s.resources import MODEL

pytestmark = pytest.mark.cluster


def test_operator_recovers_from_apiserver_and_etcd_restarts_mid_reconcile(
    dev_cluster: DevCluster, kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    create_model(kube, namespace, gpu_model("survivor"))
    # Mid-reconcile: the Deployment is written, the status (most likely) not yet.
    wait_until("the first Deployment", lambda: owned(kube, namespace, "survivor")["Deployment"],
               timeout=60, interval=0.05)
    dev_cluster.restart_component("kube-apiserver")
    wait_condition(kube, namespace, "survivor", "Ready", "True", "Available", timeout=180)

    kube.merge_patch(MODEL, namespace, "survivor", {"spec": {"replicas": 2}})
    wait_until("the scale-up to reach the Deployment", lambda: [
        d for d in owned(kube, namespace, "survivor")["Deployment"] if d["spec"]["replicas"] == 2],
        timeout=60, interval=0.05)
    dev_cluster.restart_component("etcd")  # the status write of that reconcile meets a missing store
    model = wait_condition(kube, namespace, "survivor", "Ready", "True", "Available", timeout=180)
    wait_until("two ready replicas in status", lambda: get_model(kube, namespace, "survivor")["status"].get(
        "readyReplicas") == 2, timeout=120)
    model = get_model(kube, namespace, "survivor")
    assert model["status"]["replicas"] == 2
    assert_no_duplicate_workloads(kube, namespace, "survivor")
    assert end_state(kube, namespace, "survivor")["pods"] == 2
    assert operator.alive(), "the operator died while the control plane restarted"
    assert "Traceback" not in operator.log_text()
    assert all(component.alive for component in dev_cluster.component_status())


def _node_of(kube: Kube, namespace: str, name: str) -> str:
    [pod] = serving_pods(kube, namespace, name)
    return str(pod["spec"]["nodeName"])


# In `make test-long` until its flake is understood: it failed once in two CI rehearsals (passed alone and in the
# other), most likely a status refresh skipped while the operator's workers were busy.
@pytest.mark.long
def test_pods_of_a_not_ready_gpu_node_move_when_there_is_room_else_the_model_is_unschedulable(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    # A whole 8-GPU H100 per replica: the two H100 nodes hold two replicas, no more.
    create_model(kube, namespace, gpu_model("mover", replicas=1, tensorParallel=8, tolerations=FAST_EVICTION))
    wait_condition(kube, namespace, "mover", "Ready", "True", "Available", timeout=120)
    first = _node_of(kube, namespace, "mover")

    with failed_nodes(kube) as fail:
        fail(first)

        def moved() -> bool:
            pods = serving_pods(kube, namespace, "mover")
            return any(p["spec"].get("nodeName") not in (None, first) and is_ready(p) for p in pods)

        wait_until(f"the replica on {first} to be replaced on another node", moved, timeout=120, interval=1)
        model = wait_condition(kube, namespace, "mover", "Ready", "True", "Available", timeout=60)
        assert model["status"]["readyReplicas"] == 1
    # The node is back (healed by `failed_nodes`): fill both nodes, then fail one with no room left.
    kube.merge_patch(MODEL, namespace, "mover", {"spec": {"replicas": 2}})
    wait_until("two ready replicas", lambda: sum(is_ready(p) for p in serving_pods(kube, namespace, "mover")) == 2,
               timeout=120, interval=1)
    wait_condition(kube, namespace, "mover", "Degraded", "False", timeout=60)
    victim = str(serving_pods(kube, namespace, "mover")[0]["spec"]["nodeName"])
    with failed_nodes(kube) as fail:
        fail(victim)
        model = wait_condition(kube, namespace, "mover", "Degraded", "True", "Unschedulable", timeout=120)
        message = (next(c for c in model["status"]["conditions"] if c["type"] == "Degraded"))["message"]
        assert "nvidia.com/gpu" in message or "untolerated taint" in message, message
        assert model["status"]["readyReplicas"] == 1  # the other node's replica still serves
    # Healed: the pending replica lands on the node again and the Model recovers.
    model = wait_condition(kube, namespace, "mover", "Degraded", "False", timeout=120)
    wait_until("both replicas ready again", lambda: get_model(kube, namespace, "mover")["status"].get(
        "readyReplicas") == 2, timeout=120)
    assert_no_duplicate_workloads(kube, namespace, "mover")
