"""pytest plugin: one real local cluster per test session, one restricted namespace per test.

Load it from a conftest (`pytest_plugins = ["tessera_operator.devcluster.pytest_plugin"]`).
Fixtures:
  dev_cluster      the session's DevCluster (started lazily, on first use; stopped at session end)
  kubeconfig_path  its admin kubeconfig
  kube_api         a kubernetes.client.ApiClient for it
  namespace        a fresh namespace labelled pod-security.kubernetes.io/enforce=restricted
When the binaries are missing, every test using the cluster FAILS saying how to build them.
A failing test's report gets the components' log tails and its namespace's events and pods.
Options: --devcluster-dir DIR (where to put it), --devcluster-keep (leave it running after).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tessera_operator.devcluster.binaries import BinariesMissingError
from tessera_operator.devcluster.cluster import DevCluster
from tessera_operator.devcluster.kubeclient import api_client

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "tessera.dev/test": "true"}
_namespace_key = pytest.StashKey[str]()
_holder_key = pytest.StashKey["_SessionCluster"]()


class _SessionCluster:
    """Starts the session's cluster on first request; remembers a start failure for later tests."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.cluster: DevCluster | None = None
        self.error: str | None = None

    def get(self, factory: pytest.TempPathFactory) -> DevCluster:
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        if self.cluster is None:
            option = self.config.getoption("devcluster_dir")
            directory = Path(option) if option else factory.mktemp("devcluster")
            # The audit log lets tests count writes per namespace and writer (the counters are global).
            cluster = DevCluster(directory.resolve(), "pytest", die_with_parent=True, audit=True)
            started = time.monotonic()
            try:
                cluster.up()
            except BinariesMissingError as error:
                self.error = f"the local control plane cannot start: {error}"
            except (RuntimeError, TimeoutError) as error:
                self.error = f"the local control plane failed to start: {error}"
            if self.error is not None:
                pytest.fail(self.error, pytrace=False)
            self.cluster = cluster
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"\ndevcluster up in {time.monotonic() - started:.1f} s at {directory}")
        return self.cluster

    def stop(self) -> None:
        if self.cluster is not None and not self.config.getoption("devcluster_keep"):
            self.cluster.down()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("devcluster", "Tessera local control plane")
    group.addoption(
        "--devcluster-dir",
        default=os.environ.get("TESSERA_TEST_CLUSTER_DIR"),
        help="folder of the session's cluster (default: a pytest tmp folder)",
    )
    group.addoption(
        "--devcluster-keep",
        action="store_true",
        default=False,
        help="leave the session's cluster running when the session ends",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_holder_key] = _SessionCluster(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    holder = config.stash.get(_holder_key, None)
    if holder is not None:
        holder.stop()


@pytest.fixture(scope="session")
def dev_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DevCluster:
    """The session's running local cluster."""
    return request.config.stash[_holder_key].get(tmp_path_factory)


@pytest.fixture(scope="session")
def kubeconfig_path(dev_cluster: DevCluster) -> Path:
    """The admin kubeconfig of the session's cluster."""
    return dev_cluster.kubeconfig


@pytest.fixture(scope="session")
def kube_api(dev_cluster: DevCluster) -> Iterator[k8s.ApiClient]:
    """An admin API client for the session's cluster."""
    with api_client(dev_cluster.kubeconfig) as api:
        yield api


@pytest.fixture
def namespace(kube_api: k8s.ApiClient, request: pytest.FixtureRequest) -> Generator[str, None, None]:
    """A new namespace enforcing the restricted Pod Security Standard, deleted after the test."""
    core = k8s.CoreV1Api(kube_api)
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:5]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=RESTRICTED)))
    request.node.stash[_namespace_key] = name
    deadline = time.monotonic() + 30
    while True:  # pods need the namespace's default ServiceAccount, made by the controller-manager
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the cluster's log tails (and the test namespace's pods/events) to a failing test."""
    report = yield
    holder = item.config.stash.get(_holder_key, None)
    if not report.failed or holder is None or holder.cluster is None:
        return report
    if "dev_cluster" not in getattr(item, "fixturenames", ()):
        return report
    for component, tail in holder.cluster.log_tails(lines=20).items():
        clipped = "\n".join(line[:400] for line in tail.splitlines())
        report.sections.append((f"devcluster {component} log (tail)", clipped))
    namespace = item.stash.get(_namespace_key, None)
    if namespace:
        report.sections.append((f"namespace {namespace}", _describe_namespace(holder.cluster, namespace)))
    # The logs push the assertion far above the report's end, where CI's excerpt of it looks: repeat it.
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        report.sections.append(("why it failed (repeated after the logs)", str(crash.message)[:3000]))
    return report


def _describe_namespace(cluster: DevCluster, namespace: str) -> str:
    lines: list[str] = []
    try:
        with api_client(cluster.kubeconfig) as api:
            core = k8s.CoreV1Api(api)
            for pod in core.list_namespaced_pod(namespace, _request_timeout=5).items:
                status = pod.status or k8s.V1PodStatus()
                restarts = [(c.name, c.restart_count, c.state) for c in status.container_statuses or []]
                lines.append(
                    f"pod {getattr(pod.metadata, 'name', '?')} node={getattr(pod.spec, 'node_name', '?')} "
                    f"phase={status.phase} "
                    f"ip={status.pod_ip} containers={restarts}"
                )
            for event in core.list_namespaced_event(namespace, _request_timeout=5).items:
                lines.append(
                    f"event {event.type} {event.reason} {event.involved_object.name}: {event.message}"
                )
    except Exception as error:  # a report must not fail because the API is down
        lines.append(f"(cannot describe namespace: {error})")
    return "\n".join(lines)
