"""The Helm chart: lint, render with several values sets, restricted pods, schema, CRDs, monitoring.

Rendering uses the pinned helm (hack/versions.env); see chart_support.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from chart_support import (
    CHART,
    CI_VALUES,
    MONITORING_APIS,
    NAMESPACE,
    ROOT,
    VALUES_SETS,
    Json,
    env_of,
    find,
    helm,
    one,
    pod_specs,
    render,
    render_set,
    template_args,
)

CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
OPERATOR, ROUTER = "tessera-operator", "tessera-router"


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), ROOT / "hack" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=sorted(VALUES_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Json]]:
    return request.param, render_set(request.param)


# --------------------------------------------------------------------------------------------- lint

@pytest.mark.parametrize("values", sorted(VALUES_SETS))
def test_helm_lint(values: str) -> None:
    files, apis = VALUES_SETS[values]
    args = ["lint", str(CHART), "--strict", "--namespace", NAMESPACE, "--kube-version", "1.34.0"]
    for path in files:
        args += ["--values", str(path)]
    # lint has no --api-versions: monitoring objects are checked by rendering below.
    if apis:
        args += ["--set", "monitoring.serviceMonitor.enabled=false,monitoring.podMonitor.enabled=false,"
                 "monitoring.prometheusRule.enabled=false"]
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


# ------------------------------------------------------------------------------------------- render

def test_every_values_set_renders(rendered: tuple[str, list[Json]]) -> None:
    _, objects = rendered
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"} <= kinds
    for obj in objects:
        assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "tessera" \
            or obj["kind"] == "ClusterKopfPeering" or "tessera" in json.dumps(obj["metadata"]), obj["metadata"]


def test_restricted_security_on_every_pod(rendered: tuple[str, list[Json]]) -> None:
    """Every pod meets the `restricted` Pod Security Standard, root filesystem read-only."""
    _, objects = rendered
    pods = list(pod_specs(objects))
    assert pods, "the chart renders pods"
    for where, pod in pods:
        security = pod.get("securityContext") or {}
        assert security.get("runAsNonRoot") is True, where
        assert (security.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
        for volume in pod.get("volumes") or []:
            assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
        for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
            context = container.get("securityContext") or {}
            what = f"{where} container {container['name']}"
            assert context.get("allowPrivilegeEscalation") is False, what
            assert context.get("capabilities", {}).get("drop") == ["ALL"], what
            assert not context.get("capabilities", {}).get("add"), what
            assert context.get("privileged") in (None, False), what
            assert context.get("readOnlyRootFilesystem") is True, what
            user = context.get("runAsUser", security.get("runAsUser"))
            assert isinstance(user, int) and user > 0, what
            assert (context.get("seccompProfile") or security.get("seccompProfile") or {}).get("type") == "RuntimeDefault"
            assert container.get("resources", {}).get("requests"), f"{what}: resource requests"
            for port in container.get("ports") or []:
                assert "hostPort" not in port, what


def test_images_default_to_the_app_version() -> None:
    objects = render()
    operator = one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    router = one(objects, "Deployment", ROUTER)["spec"]["template"]["spec"]["containers"][0]
    assert operator["image"] == f"ghcr.io/tessera-dev/tessera-operator:{CHART_VERSION}"
    assert router["image"] == f"ghcr.io/tessera-dev/tessera-runtime:{CHART_VERSION}"
    assert env_of(operator)["TESSERA_RUNTIME_IMAGE"] == f"ghcr.io/tessera-dev/tessera-runtime:{CHART_VERSION}"
    digest = "sha256:" + "a" * 64
    pinned = render(sets=[f"operator.image.digest={digest}", "router.image.tag=1.2.3"])
    assert one(pinned, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]["image"] \
        == f"ghcr.io/tessera-dev/tessera-operator@{digest}"
    assert one(pinned, "Deployment", ROUTER)["spec"]["template"]["spec"]["containers"][0]["image"] \
        == "ghcr.io/tessera-dev/tessera-runtime:1.2.3"


def test_single_operator_runs_standalone() -> None:
    objects = render()
    deployment = one(objects, "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "never two standalone operators at once"
    env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
    assert env["TESSERA_STANDALONE"] == "true" and env["TESSERA_ALL_NAMESPACES"] == "true"
    assert not find(objects, "ClusterKopfPeering")
    assert not [r for r in one(objects, "ClusterRole", OPERATOR)["rules"] if "kopf.dev" in r["apiGroups"]]


def test_replicas_elect_a_leader_through_kopf_peering() -> None:
    objects = render_set("ha")
    deployment = one(objects, "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 2
    env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
    assert env["TESSERA_STANDALONE"] == "false"
    peering = one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == env["TESSERA_PEERING_NAME"]
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"], "created once its CRD exists"
    crd = one(objects, "CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
    assert crd["spec"]["scope"] == "Cluster"
    rules = [r for r in one(objects, "ClusterRole", OPERATOR)["rules"] if "kopf.dev" in r["apiGroups"]]
    assert {v for r in rules if r.get("resourceNames") == [peering["metadata"]["name"]] for v in r["verbs"]} \
        == {"get", "patch"}, "writes only its own peering object"
    router = one(objects, "Deployment", ROUTER)
    assert router["spec"]["replicas"] == 3
    assert one(objects, "PodDisruptionBudget", ROUTER)["spec"]["minAvailable"] == 2


def test_local_node_placement() -> None:
    objects = render_set("local-node")
    toleration = {"key": "tessera.dev/local-node", "operator": "Exists", "effect": "NoSchedule"}
    for name in (OPERATOR, ROUTER):
        pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert toleration in pod["tolerations"] and pod["nodeSelector"] == {"tessera.dev/local-node": "true"}
    env = env_of(one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0])
    assert env["TESSERA_CPU_NODE_SELECTOR"] == "tessera.dev/local-node=true"
    assert not find(objects, "PodDisruptionBudget")


def test_router_service_and_probes() -> None:
    objects = render()
    service = one(objects, "Service", ROUTER)
    router = one(objects, "Deployment", ROUTER)
    assert service["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    container = router["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "router" and "--in-cluster" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert one(objects, "PodDisruptionBudget", ROUTER)["spec"]["selector"] == router["spec"]["selector"]


def test_catalogue_and_prices_reach_the_operator() -> None:
    objects = render_set("monitoring")
    config = one(objects, "ConfigMap", OPERATOR)
    catalogue = yaml.safe_load(config["data"]["catalogue.yaml"])["gpus"]
    assert catalogue["H100-80GB"] == {"pricePerHour": 2.9}
    assert catalogue["RTX-6000-Ada"]["memoryGiB"] == 47.5
    from tessera_operator.planner.catalogue import load_catalogue

    loaded = load_catalogue({"gpus": catalogue})
    assert loaded.get("H100-80GB").price_per_hour == 2.9 and loaded.get("RTX-6000-Ada").price_per_hour == 1.2
    env = env_of(one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0])
    assert env["TESSERA_METRICS_SOURCE"] == "prometheus"
    assert env["TESSERA_PROMETHEUS_URL"].startswith("http://prometheus-operated")
    annotations = one(objects, "Deployment", OPERATOR)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"] != one(render(), "Deployment", OPERATOR)["spec"]["template"]["metadata"][
        "annotations"]["checksum/config"], "a catalogue change rolls the operator"


# ------------------------------------------------------------------------------------------- schema

BAD_VALUES = [
    (["operator.replicas=0"], "'/operator/replicas': minimum: got 0, want 1"),
    (["operator.replica=2"], "additional properties 'replica' not allowed"),
    (["router.image.pullPolicy=Sometimes"], "pullPolicy"),
    (["metrics.source=graphite"], "'/metrics/source': value must be one of 'direct', 'prometheus'"),
    (["metrics.source=prometheus"], "url"),
    (["podSecurity.runAsUser=0"], "runAsUser"),
    (["monitoring.prometheusRule.ttftObjectiveSeconds=2"], "ttftObjectiveSeconds"),
    (["monitoring.prometheusRule.sloTarget=1.5"], "sloTarget"),
    (["router.apiKeys.namespace=Not_A_Namespace"], "namespace"),
    (["gpuPrices.H100-80GB=-1"], "gpuPrices"),
    (["gpuCatalogue.H100-80GB.priceperhour=3"], "priceperhour"),
    (["operator.image.digest=sha256:xyz"], "digest"),
]


@pytest.mark.parametrize(("sets", "mentions"), BAD_VALUES, ids=[s[0][0] for s in BAD_VALUES])
def test_schema_rejects_bad_values_clearly(sets: list[str], mentions: str) -> None:
    result = helm(*template_args(sets=sets), check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr or "required" in result.stderr
    assert mentions in result.stderr, result.stderr


def test_schema_accepts_the_defaults_and_every_ci_file() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for path in [CHART / "values.yaml", CHART / "values-local-node.yaml", *sorted(CI_VALUES.glob("*.yaml"))]:
        merged = _merge(yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load(path.read_text()) or {})
        jsonschema.validate(merged, schema)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_every_value_is_documented_in_values_yaml() -> None:
    """Each key of the schema appears in values.yaml, so `helm show values` documents it."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], data: Any, path: str) -> None:
        for key, sub in (node.get("properties") or {}).items():
            if key == "global":
                continue
            assert isinstance(data, dict) and key in data, f"{path}{key} is in the schema but not in values.yaml"
            if sub.get("type") == "object" and "properties" in sub:
                walk(sub, data[key], f"{path}{key}.")

    walk(schema, values, "")


# --------------------------------------------------------------------------------------------- CRDs

def test_crds_are_kept_and_match_the_generated_ones() -> None:
    objects = render()
    crds = {c["metadata"]["name"]: c for c in find(objects, "CustomResourceDefinition")}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        source = yaml.safe_load(path.read_text())
        crd = crds[source["metadata"]["name"]]
        assert crd["spec"] == source["spec"], f"{path.name}: run `make crds`"
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not find(render(sets=["crds.install=false"]), "CustomResourceDefinition")


def test_chart_crd_templates_have_no_drift() -> None:
    sync = _load_script("sync-chart-crds")
    assert sync.drift() == [], "run `make crds` (hack/sync-chart-crds.py)"


def test_crd_drift_is_detected(tmp_path: Path) -> None:
    sync = _load_script("sync-chart-crds")
    source, target = tmp_path / "crds", tmp_path / "templates"
    shutil.copytree(ROOT / "crds", source)
    sync.write(source, target)
    assert sync.drift(source, target) == []
    models = source / "tessera.dev_models.yaml"
    models.write_text(models.read_text().replace("minReplicas", "minimumReplicas", 1))
    assert any("tessera.dev_models.yaml" in p for p in sync.drift(source, target))
    (target / "stale.yaml").write_text("")
    assert any("stale.yaml has no source" in p for p in sync.drift(source, target))
    models.write_text(models.read_text().replace("description: What the model owner declares.",
                                                 "description: What the {{ .Values.owner }} declares.", 1))
    with pytest.raises(sync.SyncError):
        sync.write(source, target)


# ------------------------------------------------------------------------------------------ monitoring

def test_monitoring_objects() -> None:
    objects = render_set("monitoring")
    service_monitor = one(objects, "ServiceMonitor")
    assert {e["port"] for e in service_monitor["spec"]["endpoints"]} == {"metrics", "http"}
    pod_monitor = one(objects, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "tessera-model"
    targets = {r["targetLabel"] for r in pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert {"model", "version", "namespace"} <= targets
    rules = one(objects, "PrometheusRule")
    alerts = {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"TesseraModelDegraded", "TesseraRolloutHeld", "TesseraTTFTBudgetBurn", "TesseraErrorBudgetBurn",
            "TesseraScaleFromZeroTimeout"} <= alerts
    text = json.dumps(rules)
    assert 'le=\\"1.0\\"' in text, "the TTFT objective is a bucket edge as prometheus_client writes it"
    assert "0.005" in text, "error budget 1 - 0.995"
    dashboard = one(objects, "ConfigMap", "tessera-dashboard")
    assert one(objects, "ConfigMap", "tessera-dashboard")["metadata"]["labels"]["grafana_dashboard"] == "1"
    model = json.loads(dashboard["data"]["tessera-models.json"])
    titles = {p["title"] for p in model["panels"]}
    assert {"Replicas", "Queue", "KV-cache usage", "Time to first token", "Time per output token",
            "Tokens per second", "Cost per hour", "Rollout"} <= titles


@pytest.mark.parametrize("api", MONITORING_APIS)
def test_monitoring_without_the_crds_fails_clearly(api: str) -> None:
    kind = api.rsplit("/", 1)[1]
    key = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor", "PrometheusRule": "prometheusRule"}[kind]
    result = helm(*template_args(sets=[f"monitoring.{key}.enabled=true"]), check=False)
    assert result.returncode != 0 and f"needs the Prometheus Operator's {kind} CRD" in result.stderr


def test_dashboard_is_generated() -> None:
    assets = _load_script("gen-chart-assets")
    assert (CHART / "dashboards" / "tessera-models.json").read_text() == assets.render_dashboard(), \
        "run hack/gen-chart-assets.py"


def test_no_machine_path_in_chart() -> None:
    for path in CHART.rglob("*"):
        if path.is_file():
            assert not re.search(r"/(work|root|home)/[a-z]", path.read_text()), path
