"""Helpers for the router's tests on the local control plane: Models with the status the operator
would write, serving pods on the local node, and `tessera-runtime router` as a child process."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import yaml
from cluster_helpers import POD_IP_ENV, container, local_pod_spec, pod_manifest, wait_until
from kubernetes import client as k8s

from tessera_operator.devcluster.processes import free_port

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "tessera.dev", "v1alpha1", "models"
Json = dict[str, Any]


def create_model(kube_api: k8s.ApiClient, namespace: str, name: str, served: str, traffic: list[tuple[str, int]],
                 *, aliases: list[str] | None = None, candidate: str | None = None) -> None:
    """A Model and the routing status the operator would write (through the status subresource)."""
    custom = k8s.CustomObjectsApi(kube_api)
    model: Json = yaml.safe_load((REPO / "examples" / "smollm2-cpu.yaml").read_text())
    model["metadata"] = {"name": name}
    model["spec"]["servedModelName"] = served
    model["spec"]["aliases"] = aliases or []
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, model)
    status: Json = {"traffic": [{"version": v, "weight": w} for v, w in traffic],
                    "stable": {"version": traffic[0][0]}}
    if candidate:
        status["candidate"] = {"version": candidate}
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status},
                                                 _content_type="application/merge-patch+json")


def get_model(kube_api: k8s.ApiClient, namespace: str, name: str) -> Json:
    found = k8s.CustomObjectsApi(kube_api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return cast(Json, found)


def fake_pod(name: str, model: str, version: str, grace: int = 5) -> Json:
    """A serving pod on the local node: the router's fake OpenAI server on the pod's (loopback) IP.

    On SIGTERM it stops listening and lets in-flight streams finish, as a model server does.
    """
    server = container(
        "server",
        ["python", "-m", "tessera_runtime.router.testing", "--host", "$(POD_IP)", "--port", "8000", "--name", name,
         "--shutdown-timeout", str(grace)],
        env=[POD_IP_ENV],
        ports=[{"containerPort": 8000, "name": "http"}],
        readinessProbe={"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1},
    )
    return serving_pod(name, model, version, server, grace)


def serving_pod(name: str, model: str, version: str, server: Json, grace: int) -> Json:
    """A pod with the serving labels the operator puts on a Model's pods."""
    labels = {"tessera.dev/model": model, "tessera.dev/version": version,
              "app.kubernetes.io/name": "tessera-model", "app.kubernetes.io/component": "server"}
    return dict(pod_manifest(name, local_pod_spec([server], terminationGracePeriodSeconds=grace), labels=labels))


def create_pods(kube_api: k8s.ApiClient, namespace: str, pods: list[Json], timeout: float = 90) -> None:
    """Create the pods and wait until every one is Ready."""
    core = k8s.CoreV1Api(kube_api)
    for pod in pods:
        core.create_namespaced_pod(namespace, cast(Any, pod))

    def ready(name: str) -> bool:
        status = core.read_namespaced_pod(name, namespace).status
        conditions = (status.conditions if status is not None else None) or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    for pod in pods:
        name: str = pod["metadata"]["name"]
        wait_until(f"pod {name} to be Ready", functools.partial(ready, name), timeout)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def router_process(kubeconfig: Path, namespace: str, log: Path, *extra: str) -> Iterator[str]:
    """`tessera-runtime router` watching `namespace` (pods as endpoints), ready; yields its base URL.
    `extra`: more router options (hold queue, API keys, scraping)."""
    port = free_port()
    executable = Path(sys.executable).parent / "tessera-runtime"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(executable), "router", "--host", "127.0.0.1", "--port", str(port), "--kubeconfig", str(kubeconfig),
             "--namespace", namespace, "--endpoints-from", "pods", *extra],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("the router to be ready (first lists delivered)", lambda: _answers(url + "/ready"), timeout=60)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        sys.stderr.write("\n--- router log ---\n" + log.read_text(errors="replace")[-4000:])


def metric(url: str, name: str, labels: dict[str, str]) -> float | None:
    """One sample of the router's /metrics whose labels include `labels`."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None
