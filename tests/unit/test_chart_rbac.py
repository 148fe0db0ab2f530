"""Least privilege: the chart grants exactly what the operator's and the router's code calls.

The code side comes from rbac_scan (read from the source with `ast`); the chart side from
`helm template`. Both directions are checked: every call is allowed, and every grant is used
(or is one of kopf's own needs, listed below with the reason).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_support import NAMESPACE, Json, env_of, find, one, render, render_set
from rbac_scan import Permission, ScanResult, scan_evaluator, scan_operator, scan_router

OPERATOR, ROUTER, EVALUATOR = "tessera-operator", "tessera-router", "tessera-evaluator"
API_KEYS_NAMESPACE = "tessera-api-keys"  # ci/api-keys-values.yaml
# kopf's needs that no line of Tessera's code shows.
KOPF_FRAMEWORK = {
    Permission("apiextensions.k8s.io", "customresourcedefinitions", "list"): "kopf scans CRDs at start",
    Permission("apiextensions.k8s.io", "customresourcedefinitions", "watch"): "kopf notices CRDs added later",
}
KOPF_PEERING = {
    Permission("kopf.dev", "clusterkopfpeerings", verb): "leader election between replicas"
    for verb in ("list", "watch", "get", "patch")
}
FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate"}
RBAC = "rbac.authorization.k8s.io"
# The operator creates RoleBindings to the evaluator's ClusterRole; the apiserver then checks `bind` on
# that role (no line of code says `bind`: it follows from creating the binding).
EVALUATOR_BIND = Permission(RBAC, "clusterroles", "bind")


def _bind_exception(role: Json, rule: Json, evaluator_role: str) -> bool:
    """The one allowed `bind`: the operator's, on clusterroles, by the evaluator role's name only."""
    return (role["metadata"]["name"] == OPERATOR and rule["apiGroups"] == [RBAC]
            and rule["resources"] == ["clusterroles"] and rule.get("resourceNames") == [evaluator_role]
            and rule["verbs"] == ["bind"])
# The router reads ready pods from EndpointSlices or from the pods (router.endpointsFrom): the code
# has both paths, the chart grants the chosen one.
ENDPOINT_SOURCES = {
    "endpointslices": {Permission("discovery.k8s.io", "endpointslices", v) for v in ("list", "watch")},
    "pods": {Permission("", "pods", v) for v in ("list", "watch")},
}


def router_needs(endpoints_from: str, api_keys: bool) -> ScanResult:
    """What the router's code calls with these settings (the other endpoint source, and Secrets
    without API keys, left out)."""
    scanned = scan_router()
    unused = set().union(*(p for source, p in ENDPOINT_SOURCES.items() if source != endpoints_from))
    return ScanResult({p: w for p, w in scanned.needed.items()
                       if p not in unused and (api_keys or p.resource != "secrets")}, scanned.unresolved)


def _rules(objects: list[Json], kind: str, name: str) -> list[Json]:
    return list(one(objects, kind, name)["rules"])


def granted(rules: list[Json]) -> set[Permission]:
    """Every (group, resource, verb) the rules allow."""
    return {Permission(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def _bound_roles(objects: list[Json], service_account: str) -> list[tuple[str, str, str | None]]:
    """(kind, name, namespace) of every role bound to a ServiceAccount of the release."""
    found = []
    for binding in [*find(objects, "ClusterRoleBinding"), *find(objects, "RoleBinding")]:
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount" and subject["name"] == service_account \
                    and subject["namespace"] == NAMESPACE:
                found.append((binding["roleRef"]["kind"], binding["roleRef"]["name"],
                              binding["metadata"].get("namespace")))
    return found


def _assert_both_ways(needed: ScanResult, grants: set[Permission], allowed_extra: dict[Permission, str]) -> None:
    assert not needed.unresolved, f"the scan could not attribute: {needed.unresolved}"
    missing = {p: needed.needed[p] for p in needed.needed if p not in grants}
    assert not missing, "the code calls what the chart does not grant:\n" + "\n".join(
        f"  {p} (used at {', '.join(w[:3])})" for p, w in sorted(missing.items()))
    unused = sorted(p for p in grants if p not in needed.needed and p not in allowed_extra)
    assert not unused, "the chart grants what no code uses: " + ", ".join(map(str, unused))


@pytest.mark.parametrize("values", ["default", "ha", "api-keys", "monitoring"])
def test_no_wildcards_nor_escalation(values: str) -> None:
    objects = render_set(values)
    roles = [*find(objects, "ClusterRole"), *find(objects, "Role")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            where = f"{role['kind']} {role['metadata']['name']}: {rule}"
            assert "nonResourceURLs" not in rule, where
            assert "*" not in rule["apiGroups"] and "*" not in rule["resources"], where
            if not _bind_exception(role, rule, EVALUATOR):
                assert not FORBIDDEN_VERBS & set(rule["verbs"]), where
            assert all("*" not in r for r in rule["resources"]), where
        assert "aggregationRule" not in role
    for binding in [*find(objects, "ClusterRoleBinding"), *find(objects, "RoleBinding")]:
        assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit", "view")
        assert binding["roleRef"]["name"].startswith("tessera-"), "binds only the chart's own roles"


@pytest.mark.parametrize("values", ["default", "ha"])
def test_operator_rules_match_its_code(values: str) -> None:
    objects = render_set(values)
    assert _bound_roles(objects, OPERATOR) == [("ClusterRole", OPERATOR, None)]
    extra = dict(KOPF_FRAMEWORK)
    if values == "ha":
        extra.update(KOPF_PEERING)
    scanned = scan_operator()
    assert Permission(RBAC, "rolebindings", "create") in scanned.needed, "the operator binds the evaluator role"
    needed = ScanResult({**scanned.needed, EVALUATOR_BIND: ["creating the evaluator RoleBinding"]},
                        scanned.unresolved)
    _assert_both_ways(needed, granted(_rules(objects, "ClusterRole", OPERATOR)), extra)


@pytest.mark.parametrize("override", [None, "team-evaluator"])
def test_the_operator_may_bind_the_evaluator_role_and_no_other(override: str | None) -> None:
    """`bind` only with resourceNames naming the evaluator's ClusterRole, whose name the operator is told."""
    objects = render(sets=[f"models.evaluatorClusterRole={override}"] if override else [])
    role_name = override or EVALUATOR
    assert one(objects, "ClusterRole", role_name)["rules"], "the chart creates the role it lets the operator bind"
    binds = [(role["metadata"]["name"], rule) for role in [*find(objects, "ClusterRole"), *find(objects, "Role")]
             for rule in role["rules"] if "bind" in rule["verbs"]]
    assert len(binds) == 1
    owner, rule = binds[0]
    assert owner == OPERATOR and rule == {"apiGroups": [RBAC], "resources": ["clusterroles"],
                                          "resourceNames": [role_name], "verbs": ["bind"]}
    container = one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["TESSERA_EVALUATOR_CLUSTER_ROLE"] == role_name


def test_operator_never_reads_secrets_nor_writes_model_specs() -> None:
    grants = granted(_rules(render_set("ha"), "ClusterRole", OPERATOR))
    assert not {p for p in grants if p.resource == "secrets"}
    assert not {p for p in grants if p.resource == "models" and p.verb in ("create", "update", "delete")}


def test_router_rules_match_its_code() -> None:
    assert set().union(*ENDPOINT_SOURCES.values()) <= set(scan_router().needed), "the code reads both sources"
    objects = render_set("api-keys")
    bound = _bound_roles(objects, ROUTER)
    assert sorted(bound, key=str) == sorted(
        [("ClusterRole", ROUTER, None), ("Role", f"{ROUTER}-api-keys", API_KEYS_NAMESPACE)], key=str)
    cluster = granted(_rules(objects, "ClusterRole", ROUTER))
    in_namespace = granted(one(objects, "Role", f"{ROUTER}-api-keys")["rules"])
    assert one(objects, "Role", f"{ROUTER}-api-keys")["metadata"]["namespace"] == API_KEYS_NAMESPACE
    _assert_both_ways(router_needs("endpointslices", api_keys=True), cluster | in_namespace, {})
    assert not {p for p in cluster if p.resource == "secrets"}, "Secrets only in the API-key namespace"
    assert in_namespace == {Permission("", "secrets", "list"), Permission("", "secrets", "watch")}


def test_router_reading_pods_on_the_local_node() -> None:
    objects = render_set("local-node")
    grants = granted(_rules(objects, "ClusterRole", ROUTER))
    _assert_both_ways(router_needs("pods", api_keys=False), grants, {})
    assert not grants & ENDPOINT_SOURCES["endpointslices"]
    args = one(objects, "Deployment", ROUTER)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--endpoints-from=pods" in args


def test_router_without_api_keys_reads_no_secret() -> None:
    objects = render()
    assert not find(objects, "Role")
    assert not {p for p in granted(_rules(objects, "ClusterRole", ROUTER)) if p.resource == "secrets"}


def test_router_cannot_write_models_beyond_the_demand_annotation() -> None:
    objects = render()
    grants = granted(_rules(objects, "ClusterRole", ROUTER))
    model_verbs = {p.verb for p in grants if p.group == "tessera.dev"}
    assert model_verbs == {"list", "watch", "patch"}
    assert not {p for p in grants if p.resource.startswith("models/")}
    policy = one(objects, "ValidatingAdmissionPolicy")
    match = policy["spec"]["matchConditions"][0]["expression"]
    assert f"system:serviceaccount:{NAMESPACE}:{ROUTER}" in match
    assert one(objects, "ValidatingAdmissionPolicyBinding")["spec"]["policyName"] == policy["metadata"]["name"]


def test_evaluator_rules_match_its_code() -> None:
    objects = render()
    _assert_both_ways(scan_evaluator(), granted(_rules(objects, "ClusterRole", EVALUATOR)), {})
    bindings = [*find(objects, "ClusterRoleBinding"), *find(objects, "RoleBinding")]
    assert not [b for b in bindings if b["roleRef"]["name"] == EVALUATOR], "bound per namespace, not by the chart"


def test_scan_sees_new_api_calls(tmp_path: Path) -> None:
    """The scan is what keeps the chart honest: a new call must show up in it."""
    (tmp_path / "extra.py").write_text(
        "def f(core, apps):\n"
        "    core.read_namespaced_config_map('a', 'b')\n"
        "    apps.replace_namespaced_deployment_status('a', 'b', {})\n"
        "    core.list_pod_for_all_namespaces(watch=True)\n"
        "    custom.delete_namespaced_custom_object('tessera.dev', 'v1alpha1', 'ns', 'modelevaluations', 'x')\n"
        "    run(custom.patch_cluster_custom_object, 'kopf.dev', 'v1', 'clusterkopfpeerings', 'x', {})\n"
    )
    found = set(scan_router(tmp_path).needed)
    assert found == {
        Permission("", "configmaps", "get"), Permission("apps", "deployments/status", "update"),
        Permission("", "pods", "list"), Permission("", "pods", "watch"),
        Permission("tessera.dev", "modelevaluations", "delete"), Permission("kopf.dev", "clusterkopfpeerings", "patch"),
    }
