"""Kill one of two router replicas under load (issue 14): the other keeps serving, and clients that
retry idempotent requests on the other address see no failure.

Two `tessera-runtime router --endpoints-from pods` processes watch the test's namespace; behind them
one serving pod on the local node runs the fake OpenAI server on its (loopback) pod IP; the Model's
status (stable version, traffic) is written by hand, standing in for the operator.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import POD_IP_ENV, container, local_pod_spec, pod_manifest
from fault_helpers import RetryingLoad, RouterReplica, is_ready
from operator_helpers import kube_fixture, load_example, tessera_crds_fixture, wait_until  # noqa: F401

from tessera_operator.k8s import Kube
from tessera_operator.k8s.resources import MODEL, POD

pytestmark = pytest.mark.cluster
VERSION = "f00dfeed01"
BODY = {"model": "smollm2-135m-instruct", "prompt": "Hello", "max_tokens": 4}


def _serving_pod(name: str) -> dict[str, Any]:
    server = container(
        "server",
        ["python", "-m", "tessera_runtime.router.testing", "--host", "$(POD_IP)", "--port", "8000", "--name", name],
        env=[POD_IP_ENV],
        ports=[{"containerPort": 8000, "name": "http"}],
        readinessProbe={"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1},
    )
    labels = {"tessera.dev/model": "smollm2", "tessera.dev/version": VERSION}
    return pod_manifest(name, local_pod_spec([server], terminationGracePeriodSeconds=5), labels=labels)


@pytest.fixture(name="routers")
def routers_fixture(kubeconfig_path: Path, namespace: str, tmp_path: Path) -> Iterator[list[RouterReplica]]:
    replicas = [RouterReplica(kubeconfig_path, namespace, tmp_path / f"router-{i}.log", BODY) for i in range(2)]
    yield replicas
    for replica in replicas:
        replica.stop()
    for index in range(2):
        sys.stderr.write(f"\n--- router {index} log ---\n" + (tmp_path / f"router-{index}.log").read_text()[-3000:])


def test_killing_one_of_two_routers_under_load_fails_no_retried_request(
    kube: Kube, namespace: str, routers: list[RouterReplica]
) -> None:
    manifest = load_example("smollm2-cpu.yaml")
    kube.create(MODEL, namespace, {**manifest, "metadata": {"name": "smollm2", "namespace": namespace}})
    kube.merge_patch(MODEL, namespace, "smollm2", {"status": {
        "stable": {"version": VERSION}, "traffic": [{"version": VERSION, "weight": 100}]}}, subresource="status")
    kube.create(POD, namespace, {**_serving_pod("fake-0"), "metadata": {
        **_serving_pod("fake-0")["metadata"], "namespace": namespace}})
    wait_until("the serving pod Ready", lambda: is_ready(kube.get(POD, namespace, "fake-0") or {}), timeout=60)
    for replica in routers:
        wait_until(f"router {replica.url} to serve", replica.serves, timeout=60, interval=0.5)

    victim, survivor = routers
    with RetryingLoad([victim.url, survivor.url], BODY, clients=4, attempts=3, timeout=10) as load:
        wait_until("load through both routers", lambda: min(
            load.report.by_target[victim.url], load.report.by_target[survivor.url]) >= 20, timeout=60)
        victim.kill()
        served_before = load.report.by_target[survivor.url]
        time.sleep(5)
    report = load.report
    assert report.failed == [], report.failed[:5]
    assert report.retries >= 1, "no request met the killed router: the test did not test anything"
    assert report.by_target[survivor.url] - served_before >= 20, "the surviving router stopped serving"
    assert victim.process.poll() is not None and survivor.process.poll() is None
