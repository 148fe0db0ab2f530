"""A CPU model on the local node, end to end (issue 8): the operator plans it onto the local node,
the weights are fetched by the init container, and the pods serve a real completion."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    OperatorProcess,
    condition,
    create_model,
    kube_fixture,
    load_example,
    operator_fixture,
    owned,
    tessera_crds_fixture,
    wait_condition,
)

from tessera_operator.k8s import Kube

pytestmark = [pytest.mark.cluster, pytest.mark.model, pytest.mark.slow]
Json = dict[str, Any]


def complete(pod_ip: str, model: str, prompt: str) -> Json:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, "temperature": 0}
    ).encode()
    request = urllib.request.Request(
        f"http://{pod_ip}:8000/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_cpu_model_serves_a_real_completion_through_its_pods(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    manifest = load_example("smollm2-cpu.yaml")
    manifest["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    create_model(kube, namespace, manifest)
    model = wait_condition(kube, namespace, "smollm2", "Ready", "True", "Available", timeout=420,
                           give_up_on=("FetchFailed", "CrashLooping", "ConfigError", "ImagePullFailed"))
    assert model["status"]["plan"]["accelerator"] == "cpu"
    assert condition(model, "Degraded")["status"] == "False"  # type: ignore[index]
    objects = owned(kube, namespace, "smollm2")
    pods = [p for p in objects["Pod"] if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"] == "local-cpu-0"
    fetch = pod["status"]["initContainerStatuses"][0]
    assert fetch["state"]["terminated"]["exitCode"] == 0
    answer = complete(pod["status"]["podIP"], "smollm2-135m-instruct", "What is the capital of France?")
    text = answer["choices"][0]["message"]["content"]
    assert isinstance(text, str) and text.strip()
    assert answer["usage"]["completion_tokens"] >= 1
