"""Running the real operator (`python -m tessera_operator.main`) against the session's cluster, and
reading what it did: Models, owned objects, conditions, the apiserver's write counters and its audit
log."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tessera_operator.devcluster.cluster import DevCluster
from tessera_operator.devcluster.processes import set_parent_death_signal
from tessera_operator.k8s import Kube, NotFound, load_api_client
from tessera_operator.k8s.apiserver_metrics import WRITE_VERBS, request_totals
from tessera_operator.k8s.resources import (
    DEPLOYMENT,
    LEADER_WORKER_SET,
    MODEL,
    NODE,
    POD,
    POD_DISRUPTION_BUDGET,
    SERVICE,
)

Json = dict[str, Any]
T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
LWS_CRD = REPO / "hack" / "testing" / "leaderworkerset-crd.yaml"
OPERATOR_ENV = {
    "TESSERA_REFRESH_SECONDS": "5",
    "TESSERA_CPU_NODE_SELECTOR": "tessera.dev/local-node=true",
    "TESSERA_DRAIN_SECONDS": "5",
    "TESSERA_LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.5) -> T:
    """Poll until `probe` returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class OperatorProcess:
    """The operator as a child process watching one namespace; its log goes to a file."""

    def __init__(
        self, kubeconfig: Path, namespace: str, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.env = {**OPERATOR_ENV, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tessera_operator.main",
                    "--standalone",
                    "--namespace",
                    self.namespace,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # A killed pytest must not leave operators behind, still reconciling a dead cluster.
                preexec_fn=set_parent_death_signal,
            )

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def install_crds(client: Kube, paths: list[Path], probe: Callable[[], object]) -> None:
    """Apply CRDs (idempotent) and wait until their API answers."""
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if not document:
                continue
            client.apply(document)

    def served() -> bool:
        with contextlib.suppress(NotFound):
            probe()
            return True
        return False

    wait_until(f"{', '.join(p.name for p in paths)} to be served", served, timeout=30)


@pytest.fixture(scope="session", name="tessera_crds")
def tessera_crds_fixture(dev_cluster: DevCluster) -> None:
    """Tessera's CRDs (crds/*.yaml), installed once per session."""
    client = Kube(load_api_client(dev_cluster.kubeconfig), field_manager="tessera-tests")
    install_crds(client, sorted((REPO / "crds").glob("*.yaml")), lambda: client.list(MODEL, "default"))


@pytest.fixture(name="kube")
def kube_fixture(kubeconfig_path: Path, tessera_crds: None) -> Kube:
    """The operator's own JSON client, as the admin (Tessera's CRDs installed)."""
    return Kube(load_api_client(kubeconfig_path))


@pytest.fixture(name="operator")
def operator_fixture(
    dev_cluster: DevCluster, namespace: str, tmp_path: Path, tessera_crds: None
) -> Iterator[OperatorProcess]:
    """A running operator for the test's namespace (pytest shows its log tail when the test fails)."""
    process = OperatorProcess(dev_cluster.kubeconfig, namespace, tmp_path / "operator.log")
    process.start()
    yield process
    # Delete the test's Models while the operator still runs, so it lifts its finalizer and the
    # namespace does not hang in Terminating (its retries would add writes to later tests' counts).
    client = Kube(load_api_client(dev_cluster.kubeconfig))
    if not process.alive():
        process.start()
    for model in client.list(MODEL, namespace):
        client.delete(MODEL, namespace, model["metadata"]["name"])
    with contextlib.suppress(AssertionError):
        wait_until("the test's Models to be deleted", lambda: not client.list(MODEL, namespace), timeout=60)
    process.stop()
    sys.stderr.write(f"\n--- operator log ({process.log}) ---\n" + process.log_text()[-8000:])


@pytest.fixture(scope="session", name="leader_worker_set_crd")
def leader_worker_set_crd_fixture(dev_cluster: DevCluster) -> None:
    """The stand-in LeaderWorkerSet CRD, installed once per session and served before tests use it."""
    client = Kube(load_api_client(dev_cluster.kubeconfig), field_manager="tessera-tests")
    install_crds(client, [LWS_CRD], lambda: client.list(LEADER_WORKER_SET, "default"))


def load_example(name: str) -> Json:
    return yaml.safe_load((EXAMPLES / name).read_text())  # type: ignore[no-any-return]


def create_model(kube: Kube, namespace: str, manifest: Json) -> Json:
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    return kube.create(MODEL, namespace, body)


def get_model(kube: Kube, namespace: str, name: str) -> Json:
    found = kube.get(MODEL, namespace, name)
    assert found is not None, f"Model {name} is gone"
    return found


def condition(model: Json, kind: str) -> Json | None:
    for item in (model.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return item  # type: ignore[no-any-return]
    return None


def wait_condition(
    kube: Kube,
    namespace: str,
    name: str,
    kind: str,
    status: str,
    reason: str | None = None,
    timeout: float = 90,
    give_up_on: tuple[str, ...] = (),
) -> Json:
    """Wait until the Model's condition `kind` has `status` (and `reason`); returns the Model.

    Fails at once when Degraded=True names one of `give_up_on` (a state that waiting will not fix).
    """

    def check() -> Json | None:
        model = get_model(kube, namespace, name)
        degraded = condition(model, "Degraded") or {}
        if degraded.get("status") == "True" and degraded.get("reason") in give_up_on:
            raise AssertionError(f"Model {name} is Degraded: {degraded['reason']}: {degraded.get('message')}")
        found = condition(model, kind)
        current = (model.get("status") or {}).get("observedGeneration") == model["metadata"]["generation"]
        if current and found and found["status"] == status and (reason is None or found["reason"] == reason):
            return model
        return None

    try:
        return wait_until(f"{kind}={status} {reason or ''} on Model {name}", check, timeout)
    except AssertionError as error:
        model = get_model(kube, namespace, name)
        raise AssertionError(f"{error}; status now: {yaml.safe_dump(model.get('status'))}") from None


def owned(kube: Kube, namespace: str, model: str) -> dict[str, list[Json]]:
    """Every object labelled as the Model's, by kind."""
    selector = f"tessera.dev/model={model}"
    found: dict[str, list[Json]] = {}
    for resource in (DEPLOYMENT, SERVICE, POD_DISRUPTION_BUDGET, POD):
        found[resource.kind] = kube.list(resource, namespace, selector)
    with contextlib.suppress(NotFound):
        found[LEADER_WORKER_SET.kind] = kube.list(LEADER_WORKER_SET, namespace, selector)
    return found


def node_of(kube: Kube, name: str) -> Json:
    node = kube.get(NODE, None, name)
    assert node is not None
    return node


def write_counts(kube: Kube, resources: set[str], verbs: Iterable[str] = WRITE_VERBS) -> dict[str, float]:
    """The apiserver's count of requests (writes by default) per resource[/subresource]."""
    return request_totals(kube.get_text("/metrics"), resources, verbs)


#: The verbs that change state, as the audit log names them.
AUDIT_WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class AuditLog:
    """The session cluster's audit log (every write, at Metadata level), read from a mark on.

    Unlike the apiserver's counters, which are cluster-wide, it says who wrote what where: a test can
    count the writes in its own namespace while earlier tests' namespaces are still being torn down.
    """

    def __init__(self, cluster: DevCluster) -> None:
        self.path = cluster.layout.audit_log

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def writes_since(self, mark: int, namespace: str, resources: set[str]) -> list[str]:
        """Writes to `resources` in `namespace` since `mark`: "verb resource[/subresource] name (agent)"."""
        with self.path.open("rb") as handle:
            handle.seek(mark)
            lines = handle.read().decode(errors="replace").splitlines()
        writes = []
        for line in lines:
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                ref = event.get("objectRef") or {}
                if (
                    event.get("stage") != "ResponseComplete"
                    or event.get("verb") not in AUDIT_WRITE_VERBS
                    or ref.get("namespace") != namespace
                    or ref.get("resource") not in resources
                ):
                    continue
                resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                writes.append(f"{event['verb']} {resource} {ref.get('name', '')} ({event.get('userAgent', '?')})")
        return writes
