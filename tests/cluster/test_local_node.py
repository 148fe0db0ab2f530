"""The local node runs its pods as real processes, like a kubelet without containers (issue 5)."""

from __future__ import annotations

import ipaddress
import textwrap
import urllib.request
from typing import Any

import pytest
from cluster_helpers import (
    POD_IP_ENV,
    container,
    container_pid,
    deployment_manifest,
    local_pod_spec,
    pod_manifest,
    process_alive,
    wait_until,
)
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from tessera_operator.cli import app
from tessera_operator.devcluster.cluster import DevCluster

pytestmark = pytest.mark.cluster
HTTP_SERVER = ["python", "-m", "http.server", "8080", "--bind", "$(POD_IP)"]


def _pod(core: Any, namespace: str, name: str) -> Any:
    return core.read_namespaced_pod(name, namespace)


def _running_pid(core: Any, namespace: str, name: str) -> int:
    def running() -> Any:
        statuses = _pod(core, namespace, name).status.container_statuses or []
        return statuses and statuses[0].state.running and statuses[0]

    return container_pid(wait_until(f"pod {name} running", running))


def _gone(core: Any, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except ApiException as error:
        return bool(error.status == 404)
    return False


def test_http_deployment_gets_two_ready_replicas_on_distinct_loopback_ips(
    dev_cluster: DevCluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    server = container(
        "web",
        HTTP_SERVER,
        env=[POD_IP_ENV],
        readinessProbe=probe,
        ports=[{"containerPort": 8080, "name": "http"}],
    )
    apps: Any = k8s.AppsV1Api(kube_api)
    core: Any = k8s.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment_manifest("web", 2, local_pod_spec([server])))

    wait_until(
        "2 ready replicas",
        lambda: apps.read_namespaced_deployment("web", namespace).status.ready_replicas == 2,
    )
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2
    cidr = ipaddress.ip_network(dev_cluster.profile.local_node.pod_cidr)
    assert all(ipaddress.ip_address(ip) in cidr for ip in ips)
    assert {p.spec.node_name for p in pods} == {dev_cluster.profile.local_node.name}
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as response:
            assert response.status == 200


def test_failing_readiness_probe_keeps_the_pod_unready(kube_api: k8s.ApiClient, namespace: str) -> None:
    core: Any = k8s.CoreV1Api(kube_api)
    never_ready = {"exec": {"command": ["python", "-c", "raise SystemExit(1)"]}, "periodSeconds": 1}
    sleeper = container("main", ["python", "-c", "import time; time.sleep(3600)"], readinessProbe=never_ready)
    core.create_namespaced_pod(namespace, pod_manifest("unready", local_pod_spec([sleeper])))

    def probe_failed() -> list[Any]:
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=unready").items
        return [e for e in events if e.reason == "Unhealthy" and "Readiness" in e.message]

    wait_until("a failed readiness probe event", probe_failed, timeout=60)
    pod = _pod(core, namespace, "unready")
    assert pod.status.phase == "Running"
    assert pod.status.container_statuses[0].state.running is not None
    assert pod.status.container_statuses[0].ready is False
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert ready.status == "False"


def test_crashing_container_restarts_with_back_off(
    dev_cluster: DevCluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    core: Any = k8s.CoreV1Api(kube_api)
    crasher = container("main", ["python", "-c", "print('about to crash', flush=True); raise SystemExit(3)"])
    core.create_namespaced_pod(namespace, pod_manifest("crasher", local_pod_spec([crasher])))
    seen_back_off: list[str] = []

    def restarted_twice() -> Any:
        status = _pod(core, namespace, "crasher").status.container_statuses
        if not status:
            return None
        if status[0].state.waiting is not None:
            seen_back_off.append(status[0].state.waiting.reason)
        return status[0] if status[0].restart_count >= 2 else None

    status = wait_until("two restarts", restarted_twice, timeout=90)
    assert "CrashLoopBackOff" in seen_back_off
    assert status.last_state.terminated.exit_code == 3
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=crasher").items
    assert any(e.reason == "BackOff" for e in events)

    result = CliRunner().invoke(
        app, ["dev", "logs", "crasher", "-n", namespace, "--dir", str(dev_cluster.layout.root)]
    )
    assert result.exit_code == 0, result.output
    assert "about to crash" in result.output


def test_deleting_pods_stops_their_processes_within_the_grace_period(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    core: Any = k8s.CoreV1Api(kube_api)
    polite = textwrap.dedent("""
        import signal, sys, time
        def bye(*_):
            print("got SIGTERM", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("serving", flush=True)
        time.sleep(3600)
    """)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
    core.create_namespaced_pod(
        namespace,
        pod_manifest(
            "polite",
            local_pod_spec([container("main", ["python", "-c", polite])], terminationGracePeriodSeconds=60),
        ),
    )
    core.create_namespaced_pod(
        namespace,
        pod_manifest(
            "stubborn",
            local_pod_spec([container("main", ["python", "-c", stubborn])], terminationGracePeriodSeconds=2),
        ),
    )
    polite_pid = _running_pid(core, namespace, "polite")
    stubborn_pid = _running_pid(core, namespace, "stubborn")

    core.delete_namespaced_pod("polite", namespace)
    core.delete_namespaced_pod("stubborn", namespace)
    # polite exits on SIGTERM, long before its 60 s grace; stubborn is SIGKILLed after 2 s.
    wait_until("polite removed", lambda: _gone(core, namespace, "polite"), timeout=30)
    wait_until("stubborn removed", lambda: _gone(core, namespace, "stubborn"), timeout=30)
    assert not process_alive(polite_pid)
    assert not process_alive(stubborn_pid)


def test_stopping_the_agent_leaves_no_process_behind(
    dev_cluster: DevCluster, kube_api: k8s.ApiClient, namespace: str
) -> None:
    core: Any = k8s.CoreV1Api(kube_api)
    # The container starts a child of its own: both must go when the agent stops.
    parent = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)']); time.sleep(3600)"
    core.create_namespaced_pod(
        namespace, pod_manifest("survivor", local_pod_spec([container("main", ["python", "-c", parent])]))
    )
    pid = _running_pid(core, namespace, "survivor")
    children = wait_until("the child process", lambda: _children(pid))

    dev_cluster.restart_component("local-node")  # stop (all pod processes go), then start again

    assert not process_alive(pid)
    assert not any(process_alive(child) for child in children)

    # The new agent runs the pod again and counts the restart, as a kubelet would.
    def rerun() -> Any:
        status = _pod(core, namespace, "survivor").status.container_statuses[0]
        return status.state.running and status.container_id != f"tessera-local://{pid}" and status

    status = wait_until("the pod running again", rerun)
    assert status.restart_count == 1
    assert process_alive(container_pid(status))


def _children(pid: int) -> list[int]:
    from pathlib import Path

    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_mounted_service_account_token_may_list_configmaps_but_not_secrets(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    core: Any = k8s.CoreV1Api(kube_api)
    rbac: Any = k8s.RbacAuthorizationV1Api(kube_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    client_script = textwrap.dedent("""
        import os, ssl, sys, urllib.error, urllib.request
        account = sys.argv[1]
        token = open(os.path.join(account, "token")).read()
        namespace = open(os.path.join(account, "namespace")).read()
        context = ssl.create_default_context(cafile=os.path.join(account, "ca.crt"))
        server = "https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
        for kind in ("configmaps", "secrets"):
            request = urllib.request.Request("%s/api/v1/namespaces/%s/%s" % (server, namespace, kind),
                                             headers={"Authorization": "Bearer " + token})
            try:
                code = urllib.request.urlopen(request, context=context).status
            except urllib.error.HTTPError as error:
                code = error.code
            print(kind, code, flush=True)
    """)
    # The container path is rewritten to where the agent mounted the projected token.
    command = ["python", "-c", client_script, "/var/run/secrets/kubernetes.io/serviceaccount"]
    spec = local_pod_spec([container("client", command)], serviceAccountName="reader", restartPolicy="Never")
    core.create_namespaced_pod(namespace, pod_manifest("client", spec))

    phase = wait_until(
        "the client pod to finish",
        lambda: (
            _pod(core, namespace, "client").status.phase in ("Succeeded", "Failed")
            and _pod(core, namespace, "client").status.phase
        ),
    )
    # Read through the apiserver, which proxies to the agent's kubelet-style log endpoint.
    logs = core.read_namespaced_pod_log("client", namespace)
    assert phase == "Succeeded", logs
    assert "configmaps 200" in logs
    assert "secrets 403" in logs
