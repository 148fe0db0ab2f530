"""Helpers for tests against the real local cluster: pod specs that pass the restricted Pod Security
Standard and land on the local node, polling, and process checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from tessera_operator.devcluster.processes import start_ticks

T = TypeVar("T")
Json = dict[str, Any]

RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
LOCAL_NODE_SELECTOR = {"tessera.dev/local-node": "true"}
LOCAL_TOLERATION = {"key": "tessera.dev/local-node", "operator": "Exists", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
POD_IP_ENV = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def container(name: str, command: list[str], image: str = "python:3.12", **extra: Any) -> Json:
    """A container spec with a restricted security context."""
    return {"name": name, "image": image, "command": command, "securityContext": RESTRICTED_CONTAINER} | extra


def local_pod_spec(containers: list[Json], **extra: Any) -> Json:
    """A pod spec that only the local node accepts (selector + toleration of its taint)."""
    return {
        "containers": containers,
        "nodeSelector": LOCAL_NODE_SELECTOR,
        "tolerations": [LOCAL_TOLERATION],
    } | extra


def pod_manifest(name: str, spec: Json, labels: dict[str, str] | None = None) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def deployment_manifest(name: str, replicas: int, spec: Json) -> Json:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.25) -> T:
    """Poll until probe returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def container_pid(status: Any) -> int:
    """The host pid behind a local container (its containerID is tessera-local://PID)."""
    container_id: str = status.container_id
    assert container_id.startswith("tessera-local://"), container_id
    return int(container_id.removeprefix("tessera-local://"))


def process_alive(pid: int) -> bool:
    return start_ticks(pid) is not None
