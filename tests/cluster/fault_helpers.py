"""Helpers of the fault tests (issue 14): seeded kill points, GPU Models cheap on kwok nodes, the state a
run ends in (to compare a disturbed run with an undisturbed one), node failures, and a retrying
load generator for the router."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operator_helpers import OperatorProcess, get_model, load_example, owned, wait_until

from tessera_operator.devcluster.processes import free_port
from tessera_operator.devcluster.profile import FAKE_NODE_ANNOTATION
from tessera_operator.k8s import Kube
from tessera_operator.k8s.resources import NODE, POD, Resource

Json = dict[str, Any]
REPLICA_SET = Resource("apps/v1", "ReplicaSet", "replicasets")
# Evict pods from a failed node after 5 s instead of the apiserver's default 300 s (a user's choice,
# through spec.placement.tolerations), so a node failure plays out within a test.
FAST_EVICTION = [
    {"key": f"node.kubernetes.io/{taint}", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    for taint in ("not-ready", "unreachable")
]


def kill_points(seed: int, count: int, low: float, high: float) -> list[float]:
    """`count` seeded delays (seconds) in [low, high]: where to SIGKILL the operator, reproducibly."""
    rng = random.Random(seed)
    return [round(rng.uniform(low, high), 2) for _ in range(count)]


def kill_and_restart(operator: OperatorProcess, delays: list[float], log: list[str] | None = None) -> None:
    """For each delay: wait it, SIGKILL the operator, start it again at once."""
    for delay in delays:
        time.sleep(delay)
        operator.kill()
        operator.start()
        if log is not None:
            log.append(f"killed after {delay:.2f} s")


def gpu_model(name: str, replicas: int = 1, **placement: Any) -> Json:
    """The 8B example as a static-policy Model with `replicas` (one H100 each unless `placement` says)."""
    manifest = copy.deepcopy(load_example("llama-3.1-8b-gpu.yaml"))
    manifest["metadata"]["name"] = name
    manifest["spec"]["source"].pop("credentialsSecretRef")
    manifest["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 4, "policy": "static"}
    manifest["spec"]["replicas"] = replicas
    manifest["spec"]["placement"] = {"accelerators": ["H100-80GB"], "maxModelLen": 16384, **placement}
    return manifest


def live(objects: list[Json]) -> list[Json]:
    return [o for o in objects if not o["metadata"].get("deletionTimestamp")]


def is_ready(pod: Json) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def end_state(kube: Kube, namespace: str, name: str) -> Json:
    """What a run ends in, free of names, uids and times: comparable across Models and runs."""
    model = get_model(kube, namespace, name)
    status = model.get("status") or {}
    objects = owned(kube, namespace, name)

    def shape(obj: Json) -> str:
        return f"{obj['kind']}/{obj['metadata']['name'].removeprefix(name)}"

    replica_sets = [r for r in kube.list(REPLICA_SET, namespace, f"tessera.dev/model={name}")
                    if (r.get("spec") or {}).get("replicas", 0) > 0]
    pods = live(objects["Pod"])
    return {
        "objects": sorted(shape(o) for kind in ("Deployment", "Service", "PodDisruptionBudget")
                          for o in live(objects[kind])),
        "deploymentReplicas": sorted(d["spec"].get("replicas") for d in live(objects["Deployment"])),
        "activeReplicaSets": len(replica_sets),
        "pods": len(pods),
        "readyPods": sum(1 for p in pods if is_ready(p)),
        "stable": (status.get("stable") or {}).get("version"),
        "candidate": (status.get("candidate") or {}).get("version"),
        "traffic": status.get("traffic"),
        "replicas": (status.get("replicas"), status.get("readyReplicas")),
        "conditions": sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions") or []),
    }


def wait_same_state(kube: Kube, namespace: str, name: str, reference: Json, timeout: float = 120) -> Json:
    """Wait until Model `name` ends in `reference`'s state; the assertion shows the difference."""
    last: Json = {}

    def same() -> bool:
        nonlocal last
        last = end_state(kube, namespace, name)
        return last == reference

    try:
        wait_until(f"Model {name} to reach the undisturbed run's state", same, timeout=timeout, interval=1)
    except AssertionError:
        difference = {k: (last.get(k), reference.get(k)) for k in reference if last.get(k) != reference.get(k)}
        raise AssertionError(f"Model {name} differs from the undisturbed run (got, expected): {difference}") from None
    return last


def assert_no_duplicate_workloads(kube: Kube, namespace: str, name: str) -> None:
    """At most one Deployment per version, and one scaled-up ReplicaSet per Deployment."""
    deployments = Counter(d["metadata"]["labels"]["tessera.dev/version"]
                          for d in owned(kube, namespace, name)["Deployment"])
    assert all(count == 1 for count in deployments.values()), deployments
    replica_sets = Counter(r["metadata"]["ownerReferences"][0]["name"]
                           for r in kube.list(REPLICA_SET, namespace, f"tessera.dev/model={name}")
                           if (r.get("spec") or {}).get("replicas", 0) > 0)
    assert all(count == 1 for count in replica_sets.values()), replica_sets


# ---------------------------------------------------------------- node failures (kwok nodes)
def fail_node(kube: Kube, node: str) -> None:
    """Make a kwok node NotReady, as when its kubelet stops: kwok lets go of it (no more heartbeats,
    no pod updates), and its Ready condition turns False."""
    key, _ = FAKE_NODE_ANNOTATION
    kube.merge_patch(NODE, None, node, {"metadata": {"annotations": {key: "failed-by-test"}}})
    current = (kube.get(NODE, None, node) or {}).get("status", {}).get("conditions") or []
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions = [
        {**c, "status": "False", "reason": "KubeletStopped", "message": "failed by a fault test",
         "lastHeartbeatTime": now, "lastTransitionTime": now} if c["type"] == "Ready" else c
        for c in current
    ]
    kube.merge_patch(NODE, None, node, {"status": {"conditions": conditions}}, subresource="status")


def heal_node(kube: Kube, node: str) -> None:
    """Give the node back to kwok: it reports Ready again and finishes its pods' deletions."""
    key, value = FAKE_NODE_ANNOTATION
    kube.merge_patch(NODE, None, node, {"metadata": {"annotations": {key: value}}})
    wait_until(f"node {node} Ready again", lambda: node_ready(kube, node) and not node_taints(kube, node),
               timeout=90, interval=1)


def node_ready(kube: Kube, node: str) -> bool:
    conditions = (kube.get(NODE, None, node) or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def node_taints(kube: Kube, node: str) -> list[str]:
    """The node's taints that the node lifecycle controller manages (node.kubernetes.io/...)."""
    taints = ((kube.get(NODE, None, node) or {}).get("spec") or {}).get("taints") or []
    return [t["key"] for t in taints if t["key"].startswith("node.kubernetes.io/")]


@contextlib.contextmanager
def failed_nodes(kube: Kube) -> Iterator[Callable[[str], None]]:
    """Yields `fail(node)`; every node failed inside is healed on the way out, whatever happened."""
    failed: list[str] = []

    def fail(node: str) -> None:
        failed.append(node)
        fail_node(kube, node)

    try:
        yield fail
    finally:
        for node in failed:
            heal_node(kube, node)


def serving_pods(kube: Kube, namespace: str, name: str) -> list[Json]:
    return live(kube.list(POD, namespace, f"tessera.dev/model={name}"))


# ---------------------------------------------------------------- load through routers
def post_json(url: str, body: Json, timeout: float) -> tuple[int, str]:
    """POST a JSON body; the status and the start of the answer (an HTTP error status is an answer, not
    an exception; a connection failure raises OSError)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")[:200]
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")[:200]


class RouterReplica:
    """`tessera-runtime router` as a child process on a free loopback port."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path, probe_body: Json) -> None:
        self.probe_body = probe_body
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "tessera-runtime"), "router", "--host", "127.0.0.1",
                 "--port", str(self.port), "--kubeconfig", str(kubeconfig), "--namespace", namespace,
                 "--endpoints-from", "pods", "--scrape-interval", "0"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def serves(self, timeout: float = 30) -> bool:
        """Whether a completion through this replica succeeds (slow on a busy machine: a real model answers)."""
        try:
            return post_json(self.url + "/v1/completions", self.probe_body, timeout)[0] == 200
        except OSError:
            return False

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class LoadReport:
    """What the clients saw: requests that finally succeeded, failed (after retries), and retries made."""

    ok: int = 0
    failed: list[str] = field(default_factory=list)
    retries: int = 0
    by_target: Counter[str] = field(default_factory=Counter)


class RetryingLoad:
    """Closed-loop clients sending one idempotent request each at a time, round-robin over router URLs;
    a connection failure or a 5xx is retried on the next URL (as a client with two router addresses
    behind a load balancer would), up to `attempts` times."""

    def __init__(self, urls: list[str], body: Json, clients: int = 2, attempts: int = 4, timeout: float = 60) -> None:
        self.urls, self.body, self.clients, self.attempts, self.timeout = urls, body, clients, attempts, timeout
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> RetryingLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout * self.attempts)

    def _client(self, index: int) -> None:
        turn = index
        while not self._stop.is_set():
            self._one_request(turn)
            turn += 1
            time.sleep(0.05)

    def _one_request(self, turn: int) -> None:
        error = ""
        for attempt in range(self.attempts):
            url = self.urls[(turn + attempt) % len(self.urls)]
            try:
                status, text = post_json(url + "/v1/completions", self.body, self.timeout)
            except OSError as failure:  # refused, reset, timed out: the request may not have been served
                error = f"{url}: {type(failure).__name__} {failure}"
                continue
            if status == 200:
                with self._lock:
                    self.report.ok += 1
                    self.report.retries += attempt
                    self.report.by_target[url] += 1
                return
            error = f"{url}: HTTP {status} {text}"
            if status < 500:
                break  # a client error is not worth a retry
        with self._lock:
            self.report.failed.append(error)

    def sent(self) -> int:
        with self._lock:
            return self.report.ok + len(self.report.failed)
