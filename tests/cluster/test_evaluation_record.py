"""`tessera-runtime evaluate` against the real API: it reads the EvaluationSuite, writes exactly one
ModelEvaluation with its result through the status subresource, and the apiserver keeps that result
immutable. The two "models" are fake OpenAI servers (tessera_runtime.eval.testing) on loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_helpers import wait_until
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "tessera.dev", "v1alpha1"
SUITE = {
    "apiVersion": "tessera.dev/v1alpha1", "kind": "EvaluationSuite", "metadata": {"name": "smoke"},
    "spec": {"tasks": [
        {"name": "facts", "kind": "multipleChoice", "data": {"builtin": "facts"}, "sampleSize": 60, "margin": 0.1},
        {"name": "prose", "kind": "perplexity", "data": {"builtin": "prose"}, "margin": 0.05},
    ]},
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def evaluation_crds(kube_api: k8s.ApiClient) -> None:
    """The EvaluationSuite and ModelEvaluation CRDs, applied and Established (no Model CRD: the Job
    treats a missing Model like a standalone name)."""
    ext = k8s.ApiextensionsV1Api(kube_api)
    for kind in ("evaluationsuites", "modelevaluations"):
        crd = yaml.safe_load((REPO / "crds" / f"tessera.dev_{kind}.yaml").read_text())
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as error:
            if error.status != 409:
                raise

        def established(name: str = crd["metadata"]["name"]) -> bool:
            status = ext.read_custom_resource_definition(name).status
            conditions = (status.conditions if status else None) or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_until(f"{kind} CRD Established", established, timeout=30)


@pytest.fixture(scope="module")
def fake_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A good fake model and a poor one, as processes."""
    logs = tmp_path_factory.mktemp("fakes")
    processes, urls = [], {}
    for label, skill in (("good", "0.9"), ("poor", "0.1")):
        port = _free_port()
        log = (logs / f"{label}.log").open("wb")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tessera_runtime.eval.testing", "--port", str(port), "--skill", skill],
            stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip
        urls[label] = f"http://127.0.0.1:{port}"
    try:
        for url in urls.values():
            wait_until(f"{url} ready", partial(_ready, url), timeout=60)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _evaluate(
    kubeconfig: Path, namespace: str, name: str, candidate: str, baseline: str, suite: str = "smoke"
) -> int:
    command = [
        sys.executable, "-c", "from tessera_runtime.cli import main; main()", "evaluate",
        "--suite-name", suite, "--namespace", namespace, "--model", "chat",
        "--candidate-url", candidate, "--baseline-url", baseline,
        "--candidate-version", "c0ffee0001", "--baseline-version", "ba5e000001", "--output-name", name,
        "--resamples", "500",
    ]  # fmt: skip
    environment = os.environ | {"KUBECONFIG": str(kubeconfig)}
    return subprocess.run(command, env=environment, timeout=300, check=False).returncode


def _stored(kube_api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    objects: Any = k8s.CustomObjectsApi(kube_api)
    stored: dict[str, Any] = objects.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelevaluations", name
    )
    return stored


def test_the_job_writes_one_immutable_model_evaluation(
    evaluation_crds: None, fake_models: dict[str, str], kube_api: k8s.ApiClient, namespace: str,
    kubeconfig_path: Path,
) -> None:  # fmt: skip
    objects = k8s.CustomObjectsApi(kube_api)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "evaluationsuites", SUITE)
    started = time.monotonic()
    assert (
        _evaluate(kubeconfig_path, namespace, "chat-c0ffee0001-1", fake_models["poor"], fake_models["good"])
        == 0
    )
    stored = _stored(kube_api, namespace, "chat-c0ffee0001-1")
    result = stored["status"]["result"]
    assert result["verdict"] == "Fail", result["reason"]
    assert {t["name"]: t["verdict"] for t in result["tasks"]}["facts"] == "Fail"
    assert stored["spec"]["candidate"]["version"] == "c0ffee0001"
    assert stored["spec"]["suite"]["digest"].startswith("sha256:")
    assert stored["metadata"]["labels"]["tessera.dev/version"] == "c0ffee0001"

    # The apiserver refuses to change a written result.
    stored["status"]["result"]["verdict"] = "Pass"
    with pytest.raises(ApiException) as refused:
        objects.replace_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "modelevaluations", "chat-c0ffee0001-1", stored
        )
    assert refused.value.status == 422 and "immutable" in str(refused.value.body)

    # A retried Job finds the result written and leaves it be.
    assert (
        _evaluate(kubeconfig_path, namespace, "chat-c0ffee0001-1", fake_models["good"], fake_models["good"])
        == 0
    )
    assert _stored(kube_api, namespace, "chat-c0ffee0001-1")["status"]["result"]["verdict"] == "Fail"
    assert time.monotonic() - started < 600


def test_a_missing_suite_is_recorded_as_an_error(
    evaluation_crds: None, fake_models: dict[str, str], kube_api: k8s.ApiClient, namespace: str,
    kubeconfig_path: Path,
) -> None:  # fmt: skip
    code = _evaluate(
        kubeconfig_path, namespace, "chat-missing", fake_models["good"], fake_models["good"], "absent"
    )
    assert code == 0
    result = _stored(kube_api, namespace, "chat-missing")["status"]["result"]
    assert result["verdict"] == "Error" and "absent" in result["reason"]
