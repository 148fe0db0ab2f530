"""The few Kubernetes reads and writes `tessera dev up` makes: helm, kubectl apply, and waits.

Reads use the dev cluster's small REST client (importing `kubernetes` costs seconds on a busy
machine, and every second counts towards the command-to-first-token time). Writes of manifests
go through the real `kubectl apply` and `helm install`, as a user would run them.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera_operator.devcluster.readiness import RestClient

MODELS_PATH = "/apis/tessera.dev/v1alpha1"
CRD_NAMES = ("models.tessera.dev", "evaluationsuites.tessera.dev")


class StackError(RuntimeError):
    """A step of `tessera dev up` failed; the message says which and where to look."""


@dataclass(frozen=True)
class ModelSummary:
    """One Model as `status` shows it."""

    name: str
    namespace: str
    ready: bool
    replicas: int
    ready_replicas: int
    plan: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "ready": self.ready,
            "replicas": self.replicas,
            "readyReplicas": self.ready_replicas,
            "plan": self.plan,
            "message": self.message,
        }


def run_tool(argv: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run helm or kubectl; raise StackError with its output when it fails."""
    completed = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=300,
    )
    if completed.returncode != 0:
        shown = " ".join(a if len(a) < 80 else a[:77] + "..." for a in argv[:6])
        raise StackError(f"`{shown} ...` failed (exit {completed.returncode}):\n{completed.stderr.strip()}")
    return completed.stdout


def poll(what: str, probe: Callable[[], bool], timeout: float, explain: Callable[[], str]) -> None:
    """Wait until `probe` is true; on timeout raise StackError with `explain()` (the current state)."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while not probe():
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not done after {timeout:.0f} s. {explain()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def crds_established(rest: RestClient) -> bool:
    """Whether the API serves Tessera's kinds (kubectl apply of a Model fails before that)."""
    for name in CRD_NAMES:
        status, crd = rest.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        if status != 200:
            return False
        conditions = (crd.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return False
    return True


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of a type, or an empty dict."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def list_models(rest: RestClient) -> list[ModelSummary]:
    """Every Model in the cluster, by namespace and name."""
    status, answer = rest.request("GET", f"{MODELS_PATH}/models")
    if status != 200:
        return []
    summaries = []
    for item in answer.get("items", []):
        meta, model_status = item["metadata"], item.get("status") or {}
        ready = condition(item, "Ready")
        summaries.append(
            ModelSummary(
                name=meta["name"],
                namespace=meta["namespace"],
                ready=ready.get("status") == "True",
                replicas=int(model_status.get("replicas") or 0),
                ready_replicas=int(model_status.get("readyReplicas") or 0),
                plan=str((model_status.get("plan") or {}).get("summary", "")),
                message=str(ready.get("message", "")),
            )
        )
    return sorted(summaries, key=lambda m: (m.namespace, m.name))


def get_model(rest: RestClient, namespace: str, name: str) -> dict[str, Any] | None:
    """One Model object, or None."""
    status, answer = rest.request("GET", f"{MODELS_PATH}/namespaces/{namespace}/models/{name}")
    return answer if status == 200 and isinstance(answer, dict) else None


def pods(rest: RestClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods matching a label selector."""
    answer = rest.checked("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
    return list(answer.get("items", []))


def pod_ready(pod: dict[str, Any]) -> bool:
    """Whether a pod has the Ready condition and is not terminating."""
    return condition(pod, "Ready").get("status") == "True" and not pod["metadata"].get("deletionTimestamp")


def describe_pods(rest: RestClient, namespace: str, selector: str) -> str:
    """One line per pod (phase, node, container states): what a timeout message needs."""
    lines = []
    for pod in pods(rest, namespace, selector):
        states = []
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            state = container.get("state") or {}
            kind, detail = next(iter(state.items()), ("?", {}))
            reason = str(detail.get("reason", "")) if isinstance(detail, dict) else ""
            states.append(f"{container['name']}={kind}{'/' + reason if reason else ''}")
        status = pod.get("status") or {}
        node = pod["spec"].get("nodeName") or "unscheduled"
        lines.append(f"{pod['metadata']['name']}: {status.get('phase')} on {node} [{', '.join(states)}]")
    return "; ".join(lines) or "no pods"


def kubeconfig_env(kubeconfig: Path, helm_home: Path) -> dict[str, str]:
    """Environment for helm: the cluster's kubeconfig and helm's own folders inside the cluster's."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "HELM_CACHE_HOME": str(helm_home / "cache"),
        "HELM_CONFIG_HOME": str(helm_home / "config"),
        "HELM_DATA_HOME": str(helm_home / "data"),
    }
