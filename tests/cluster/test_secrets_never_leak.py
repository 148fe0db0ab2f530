"""Secrets never leak (issue 14): the value of every Secret the test creates, raw or base64, appears
nowhere a user or a monitoring system can read it.

The Secrets are real uses of credentials: source credentials referenced by Models (a Hugging Face
token, S3 keys as JSON, a malformed S3 credentials file) and router API keys. Models drive every
path that touches them: a GPU Model (kwok) that gets Ready, a CPU Model on the local node that
serves the real model, and Models whose fetch fails on their credentials or whose Secret key is
missing, so errors are reported. Then the test scans Model and ModelEvaluation status, the
namespace's Events, the objects the operator wrote, the operator's log, the local pods' logs (files
and the API's pods/log), the router's log, the devcluster components' logs, and the /metrics of the
operator, the router and the serving pod, for every value.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    OperatorProcess,
    condition,
    create_model,
    get_model,
    kube_fixture,
    load_example,
    tessera_crds_fixture,
    wait_until,
)
from router_cluster_helpers import router_process

from tessera_operator.devcluster.cluster import DevCluster
from tessera_operator.devcluster.processes import free_port
from tessera_operator.k8s import Kube, KubeError, load_api_client
from tessera_operator.k8s.resources import (
    DEPLOYMENT,
    EVENT,
    MODEL,
    MODEL_EVALUATION,
    POD,
    SERVICE,
    Resource,
)

pytestmark = [pytest.mark.cluster, pytest.mark.model, pytest.mark.slow]
Json = dict[str, Any]
SECRET = Resource("v1", "Secret", "secrets")
CONFIG_MAP = Resource("v1", "ConfigMap", "configmaps")
SETTLE_SECONDS = 300  # the CPU Model loads the real model on a shared machine
SERVED_NAME = "smollm2-135m-instruct"


def token(prefix: str) -> str:
    """A value no code path would produce by chance."""
    return f"{prefix}{secrets.token_urlsafe(24)}"


class Sensitive:
    """Every Secret value created, and the strings inside them (each also looked for in base64)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def secret(self, kube: Kube, namespace: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None,
               annotations: dict[str, str] | None = None, inner: tuple[str, ...] = ()) -> None:
        """A Secret whose every data value is secret (policy, like an API key's models, goes in annotations)."""
        metadata = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
        kube.create(SECRET, namespace, {
            "apiVersion": "v1", "kind": "Secret", "metadata": metadata,
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        })
        for key, value in data.items():
            self.values[f"Secret {name} key {key}"] = value
        for index, value in enumerate(inner):
            self.values[f"Secret {name} inner value {index}"] = value

    def forms(self) -> Iterator[tuple[str, str]]:
        for where, value in self.values.items():
            yield where, value
            yield f"{where} (base64)", base64.b64encode(value.encode()).decode()

    def leaks(self, sources: dict[str, str]) -> list[str]:
        return [f"{what} found in {source}" for source, text in sources.items()
                for what, form in self.forms() if form in text]


def cpu_model(name: str, uri: str, secret: str, key: str) -> Json:
    manifest: Json = load_example("smollm2-cpu.yaml")
    manifest["metadata"]["name"] = name
    manifest["spec"] |= {"servedModelName": name, "aliases": []}  # the router must not route smollm2 here
    manifest["spec"]["source"] = {"uri": uri, "format": "gguf", "file": "model.gguf",
                                  "credentialsSecretRef": {"name": secret, "key": key}}
    manifest["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    # Small requests: the local node has the machine's few CPUs, and these pods only fetch (and fail).
    manifest["spec"]["placement"]["cpu"] = {"cpu": "200m", "memory": "512Mi"}
    return manifest


def outcome(model: Json) -> str | None:
    """`Ready/<reason>` or `Degraded/<reason>` once the Model settled on its current generation."""
    if (model.get("status") or {}).get("observedGeneration") != model["metadata"]["generation"]:
        return None
    ready, degraded = condition(model, "Ready") or {}, condition(model, "Degraded") or {}
    if ready.get("status") == "True":
        return f"Ready/{ready['reason']}"
    if degraded.get("status") == "True" and degraded.get("reason") not in (None, "Loading"):
        return f"Degraded/{degraded['reason']}"
    return None


def http_text(url: str, headers: dict[str, str] | None = None, body: Json | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")


@pytest.fixture(name="metered_operator")
def metered_operator_fixture(dev_cluster: DevCluster, namespace: str, tmp_path: Path,
                             tessera_crds: None) -> Iterator[tuple[OperatorProcess, int]]:
    """The operator with its /metrics endpoint on a free port."""
    port = free_port()
    process = OperatorProcess(dev_cluster.kubeconfig, namespace, tmp_path / "operator.log",
                              env={"TESSERA_METRICS_PORT": str(port)})
    process.start()
    yield process, port
    client = Kube(load_api_client(dev_cluster.kubeconfig))
    for model in client.list(MODEL, namespace):
        client.delete(MODEL, namespace, model["metadata"]["name"])
    wait_until("the test's Models to be deleted", lambda: not client.list(MODEL, namespace), timeout=90)
    process.stop()


@pytest.fixture(name="router")
def router_fixture(dev_cluster: DevCluster, namespace: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`tessera-runtime router` requiring API keys, watching the test's namespace; (URL, its log)."""
    log = tmp_path / "router.log"
    with router_process(dev_cluster.kubeconfig, namespace, log,
                        "--api-keys", "--hold-timeout", "20", "--log-level", "DEBUG") as url:
        yield url, log


def test_no_secret_value_in_status_events_logs_or_metrics(
    kube: Kube, namespace: str, dev_cluster: DevCluster, metered_operator: tuple[OperatorProcess, int],
    router: tuple[str, Path],
) -> None:
    operator, metrics_port = metered_operator
    router_url, router_log = router
    sensitive = Sensitive()
    hf = token("hf_")
    sensitive.secret(kube, namespace, "hf-token", {"token": hf})
    access, secret_key, session = token("AKIA"), token("s3secret-"), token("s3session-")
    s3_json = json.dumps({"accessKeyId": access, "secretAccessKey": secret_key, "sessionToken": session})
    sensitive.secret(kube, namespace, "s3-json", {"credentials.json": s3_json},
                     inner=(access, secret_key, session))
    sensitive.secret(kube, namespace, "s3-malformed", {"credentials": token("not-an-ini-file-")})
    sensitive.secret(kube, namespace, "pkg-token", {"token": token("pkg-")})
    full_key, other_key, limited_key = token("tsk-all-"), token("tsk-other-"), token("tsk-limited-")
    labels = {"tessera.dev/api-key": "true"}
    sensitive.secret(kube, namespace, "key-all", {"key": full_key}, labels)
    sensitive.secret(kube, namespace, "key-other", {"key": other_key}, labels, {"tessera.dev/models": "other-model"})
    sensitive.secret(kube, namespace, "key-limited", {"key": limited_key}, labels,
                     {"tessera.dev/models": "smollm2", "tessera.dev/rate-limit": "1/m"})

    gpu = load_example("llama-3.1-8b-gpu.yaml")  # references hf-token/token
    serving = load_example("smollm2-cpu.yaml")
    serving["spec"]["source"]["credentialsSecretRef"] = {"name": "pkg-token", "key": "token"}
    serving["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    expected = {
        "llama-3-1-8b": {"Ready/Available"},
        "smollm2": {"Ready/Available"},
        "s3-json": {"Degraded/FetchFailed"},
        "s3-malformed": {"Degraded/FetchFailed"},
        "hf-token": {"Degraded/FetchFailed"},
        "missing-key": {"Degraded/ConfigError"},
    }
    for manifest in (
        gpu, serving,
        cpu_model("s3-json", "s3://weights/model.gguf", "s3-json", "credentials.json"),
        cpu_model("s3-malformed", "s3://weights/model.gguf", "s3-malformed", "credentials"),
        cpu_model("hf-token", "hf://tessera-test/private-model", "hf-token", "token"),
        cpu_model("missing-key", "s3://weights/model.gguf", "s3-json", "no-such-key"),
    ):
        create_model(kube, namespace, manifest)

    def all_settled() -> dict[str, str] | None:
        found = {name: outcome(get_model(kube, namespace, name)) for name in expected}
        return found if all(found.values()) else None  # type: ignore[return-value]

    settled = wait_until("every Model to be Ready or Degraded", all_settled, timeout=SETTLE_SECONDS, interval=2)
    assert {name: settled[name] in wanted for name, wanted in expected.items()} == dict.fromkeys(expected, True), settled

    # The router with API keys: allowed, refused, rate-limited, and keys in every header it reads.
    completion = {"model": SERVED_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    answers = {
        "valid key": http_text(f"{router_url}/v1/chat/completions", {"Authorization": f"Bearer {full_key}"},
                               completion),
        "key for other models": http_text(f"{router_url}/v1/chat/completions",
                                          {"Authorization": f"Bearer {other_key}"}, completion),
        "key with extra characters": http_text(f"{router_url}/v1/chat/completions",
                                               {"Authorization": f"Bearer {full_key}x"}, completion),
        "key in api-key": http_text(f"{router_url}/v1/chat/completions", {"api-key": limited_key}, completion),
        "key over its rate": http_text(f"{router_url}/v1/chat/completions", {"x-api-key": limited_key},
                                       completion),
        "unknown key": http_text(f"{router_url}/v1/models", {"Authorization": "Bearer not-a-key"}),
    }
    statuses = {what: status for what, (status, _) in answers.items()}
    assert statuses == {"valid key": 200, "key for other models": 403, "key with extra characters": 401,
                        "key in api-key": 200, "key over its rate": 429, "unknown key": 401}, answers

    sources = collect(kube, namespace, dev_cluster, operator, metrics_port, router_url, router_log)
    sources.update({f"router answer to {what}": body for what, (_, body) in answers.items()})
    # The scan must have something to read: the failures were reported in status and pod logs.
    assert "FetchFailed" in sources["Model status"] and "ConfigError" in sources["Model status"]
    assert any(name.startswith("pod log file") for name in sources)
    assert "vllm:" in sources["pod metrics"] or "tessera" in sources["pod metrics"]
    leaks = sensitive.leaks(sources)
    assert not leaks, "\n".join(leaks)
    print(f"\nscanned {len(sources)} sources ({sum(len(t) for t in sources.values()):,} characters) for "
          f"{len(sensitive.values)} values: no leak. Outcomes: {settled}; router answers: {statuses}")


def collect(kube: Kube, namespace: str, dev_cluster: DevCluster, operator: OperatorProcess, metrics_port: int,
            router_url: str, router_log: Path) -> dict[str, str]:
    """Everything a user or a monitoring system can read, by source."""
    sources: dict[str, str] = {
        "Model status": json.dumps([m.get("status") for m in kube.list(MODEL, namespace)]),
        "ModelEvaluation status": json.dumps([m.get("status") for m in kube.list(MODEL_EVALUATION, namespace)]),
        "Events": json.dumps(kube.list(EVENT, namespace)),
        "operator log": operator.log_text(),
        "router log": router_log.read_text(errors="replace"),
        "operator metrics": http_text(f"http://127.0.0.1:{metrics_port}/metrics")[1],
        "router metrics": http_text(f"{router_url}/metrics")[1],
    }
    for resource in (DEPLOYMENT, SERVICE, POD, CONFIG_MAP):
        sources[f"{resource.kind} objects"] = json.dumps(kube.list(resource, namespace))
    pod_metrics = []
    for pod in kube.list(POD, namespace):
        name, status = pod["metadata"]["name"], pod.get("status") or {}
        containers = [c["name"] for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]]
        if pod["spec"].get("nodeName") != "local-cpu-0":
            continue
        for container in containers:
            try:
                sources[f"pods/log {name}/{container}"] = kube._raw(
                    "get", POD.path(namespace, name, "log"), header_params={"Accept": "text/plain"},
                    query_params=[("container", container)]).decode(errors="replace")
            except KubeError as error:  # a container that never started has no log
                sources[f"pods/log {name}/{container} (refused)"] = error.message
        if status.get("podIP") and any(c.get("ready") for c in status.get("containerStatuses") or []):
            pod_metrics.append(http_text(f"http://{status['podIP']}:8000/metrics")[1])
    sources["pod metrics"] = "\n".join(pod_metrics)
    logs = dev_cluster.layout.node_dir / "pod-logs"
    for path in sorted(p for p in logs.rglob("*") if p.is_file() and namespace in str(p)):
        sources[f"pod log file {path.relative_to(logs)}"] = path.read_text(errors="replace")
    for component in ("local-node", "kwok", "kube-controller-manager", "kube-scheduler"):
        path = dev_cluster.layout.log(component)
        if path.exists():
            sources[f"{component} log"] = path.read_text(errors="replace")
    return sources
