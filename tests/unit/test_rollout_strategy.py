"""The gated-rollout strategy through the reconciler, against an in-memory API: a Pass goes through
evaluation, a canary step and promotion; a Fail rolls back and is recorded; the evaluation Job is
created once with the pods' URLs; a manual action is consumed and recorded."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_desired_reconciler_fake import NAMESPACE, FakeKube, h100_node, manifest

from tessera_operator.desired import DesiredSettings, version_hash
from tessera_operator.k8s.events import EventRecorder
from tessera_operator.k8s.resources import Resource
from tessera_operator.reconcile import Reconciler, rollout_strategy
from tessera_operator.reconcile.evaluation_job import EVALUATION_LABEL, job_name
from tessera_operator.reconcile.rollout_strategy import ROLLOUT_ACTION, ROLLOUT_REQUESTED_BY

Json = dict[str, Any]
NAME = "llama-3-1-8b"
START = datetime(2025, 1, 1, tzinfo=UTC)


class RolloutFake(FakeKube):
    """FakeKube that also stores created objects (Jobs, RBAC) and merges metadata patches."""

    def create(self, resource: Resource, namespace: str | None, obj: Json) -> Json:
        if resource.kind == "Event":
            return super().create(resource, namespace, obj)
        self.objects[self._key(resource, namespace, obj["metadata"]["name"])] = copy.deepcopy(obj)
        self.writes.append(f"create {resource.kind}/{obj['metadata']['name']}")
        return obj

    def merge_patch(self, resource: Resource, namespace: str | None, name: str, patch: Json,
                    subresource: str | None = None) -> Json:
        obj = self.objects[self._key(resource, namespace, name)]
        annotations = obj["metadata"].setdefault("annotations", {})
        for key, value in (patch.get("metadata") or {}).get("annotations", {}).items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        return super().merge_patch(resource, namespace, name, patch, subresource)

    def ready_version(self, version: str, ip: str) -> None:
        self.set_ready("deployments", f"{NAME}-{version}", 1)
        pod: Json = {"metadata": {"name": f"{NAME}-{version}-pod", "namespace": NAMESPACE,
                            "labels": {"tessera.dev/model": NAME, "tessera.dev/version": version}},
               "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}
        self.objects[("pods", NAMESPACE, pod["metadata"]["name"])] = pod

    def verdict(self, name: str, verdict: str) -> None:
        self.objects[("modelevaluations", NAMESPACE, name)] = {
            "metadata": {"name": name}, "status": {"result": {"verdict": verdict, "reason": f"it was {verdict}"}}}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def no_pod_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pods here have no server: their /metrics do not answer (live evidence is unavailable)."""
    monkeypatch.setattr(rollout_strategy, "default_scraper", lambda addresses: dict.fromkeys(addresses))


@pytest.fixture
def fake() -> RolloutFake:
    return RolloutFake([h100_node("h100-0"), h100_node("h100-1")])


def gated_manifest() -> Json:
    data = manifest()
    data["spec"]["rollout"] = {"evaluationSuites": ["smoke", "bias"],
                               "canarySteps": [{"weight": 25, "duration": "5s"}]}
    return data


def start_candidate(fake: RolloutFake, clock: Clock) -> tuple[Reconciler, str, str]:
    """Stable running and ready, then a new revision whose candidate is ready; returns (run, old, new)."""
    kube: Any = fake
    run = Reconciler(kube, DesiredSettings(), EventRecorder(kube, "test"), clock=clock)
    fake.add_model(gated_manifest())
    old = version_hash(gated_manifest()["spec"])
    run.reconcile(NAMESPACE, NAME)
    fake.ready_version(old, "10.0.0.1")
    run.reconcile(NAMESPACE, NAME)
    assert fake.model(NAME)["status"]["rollout"]["phase"] == "Idle"
    model = fake.model(NAME)
    model["spec"]["source"]["revision"] = "another"
    model["metadata"]["generation"] = 2
    new = version_hash(model["spec"])
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert status["rollout"]["phase"] == "Evaluating"
    assert (status["stable"]["version"], status["candidate"]["version"]) == (old, new)
    assert status["traffic"] == [{"version": old, "weight": 100}, {"version": new, "weight": 0}]
    assert fake.kinds("deployments") == sorted([f"{NAME}-{old}", f"{NAME}-{new}"])
    fake.ready_version(new, "10.0.0.2")
    run.reconcile(NAMESPACE, NAME)
    return run, old, new


def test_pass_goes_through_the_canary_and_promotes(fake: RolloutFake) -> None:
    clock = Clock()
    run, old, new = start_candidate(fake, clock)
    evaluation = fake.model(NAME)["status"]["rollout"]["evaluation"]
    jobs = fake.kinds("jobs")
    assert jobs == [job_name(NAME, new, old, 1)]
    args = fake.objects[("jobs", NAMESPACE, jobs[0])]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--candidate-url") + 1] == "http://10.0.0.2:8000/v1"
    assert args[args.index("--baseline-url") + 1] == "http://10.0.0.1:8000/v1"
    assert args[args.index("--output-name") + 1] == evaluation
    assert [args[i + 1] for i, a in enumerate(args) if a == "--suite-name"] == ["smoke", "bias"]
    assert fake.kinds("serviceaccounts") == ["tessera-evaluator"]
    assert fake.kinds("rolebindings") == [f"tessera-evaluator-{NAME}"]
    run.reconcile(NAMESPACE, NAME)  # still running: the Job is not created twice
    assert fake.writes.count(f"create Job/{jobs[0]}") == 1
    fake.verdict(evaluation, "Pass")
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert status["rollout"]["phase"] == "Canary"
    assert status["traffic"] == [{"version": old, "weight": 75}, {"version": new, "weight": 25}]
    clock.advance(20)  # past the step and its wait for live evidence
    run.reconcile(NAMESPACE, NAME)
    assert fake.model(NAME)["status"]["rollout"]["phase"] == "Promoting"
    clock.advance(61)  # the old version drains (the operator's drain time, 60 s by default)
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert status["rollout"]["phase"] == "Completed"
    assert status["stable"]["version"] == new and "candidate" not in status
    assert status["traffic"] == [{"version": new, "weight": 100}]
    assert status["rejectedCandidates"] == []
    assert fake.kinds("deployments") == [f"{NAME}-{new}"]
    reasons = [e["reason"] for e in fake.events]
    assert "EvaluationPassed" in reasons and "Promoted" in reasons


def test_fail_rolls_back_and_records_the_candidate(fake: RolloutFake) -> None:
    clock = Clock()
    run, old, new = start_candidate(fake, clock)
    evaluation = fake.model(NAME)["status"]["rollout"]["evaluation"]
    fake.verdict(evaluation, "Fail")
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert status["rollout"]["phase"] == "RollingBack"
    assert status["traffic"][0] == {"version": old, "weight": 100}
    clock.advance(61)
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert [r["version"] for r in status["rejectedCandidates"]] == [new]
    assert status["rejectedCandidates"][0]["evaluation"] == evaluation
    assert status["stable"]["version"] == old and "candidate" not in status
    assert fake.kinds("deployments") == [f"{NAME}-{old}"]
    held = {c["type"]: c for c in status["conditions"]}["RolloutHeld"]
    assert held["status"] == "True" and held["reason"] == "CandidateRejected"
    assert "RolledBack" in [e["reason"] for e in fake.events]


def test_a_job_that_failed_without_a_result_is_an_error_and_retried(fake: RolloutFake) -> None:
    clock = Clock()
    run, _, _ = start_candidate(fake, clock)
    job = fake.objects[("jobs", NAMESPACE, fake.kinds("jobs")[0])]
    job["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
    clock.advance(60)
    run.reconcile(NAMESPACE, NAME)
    rollout = fake.model(NAME)["status"]["rollout"]
    assert rollout["phase"] == "Evaluating" and rollout["attempts"] == 2
    assert len(fake.kinds("jobs")) == 2


def test_manual_abort_is_consumed_and_recorded(fake: RolloutFake) -> None:
    clock = Clock()
    run, _, new = start_candidate(fake, clock)
    fake.model(NAME)["metadata"]["annotations"] = {ROLLOUT_ACTION: "abort", ROLLOUT_REQUESTED_BY: "alice"}
    run.reconcile(NAMESPACE, NAME)
    model = fake.model(NAME)
    assert ROLLOUT_ACTION not in model["metadata"]["annotations"]
    assert model["status"]["rollout"]["requestedBy"] == "alice"
    assert model["status"]["rollout"]["phase"] == "RollingBack"
    assert [r["version"] for r in model["status"]["rejectedCandidates"]] == [new]


def test_without_spec_rollout_the_surge_strategy_still_runs(fake: RolloutFake) -> None:
    kube: Any = fake
    fake.add_model(manifest())
    Reconciler(kube, DesiredSettings(), EventRecorder(kube, "test"), clock=Clock()).reconcile(NAMESPACE, NAME)
    assert "rollout" not in fake.model(NAME)["status"]


def test_a_job_left_by_a_killed_run_for_another_evaluation_is_replaced(fake: RolloutFake) -> None:
    """A run killed after creating the Job but before recording its evaluation in status leaves a Job that
    would write a ModelEvaluation no status names; the next runs replace it instead of waiting forever."""
    clock = Clock()
    run, _, _ = start_candidate(fake, clock)
    evaluation = fake.model(NAME)["status"]["rollout"]["evaluation"]
    job = fake.kinds("jobs")[0]
    fake.objects[("jobs", NAMESPACE, job)]["metadata"]["labels"][EVALUATION_LABEL] = "from-a-killed-run"
    run.reconcile(NAMESPACE, NAME)
    assert f"delete Job/{job}" in fake.writes
    run.reconcile(NAMESPACE, NAME)
    assert fake.kinds("jobs") == [job]
    assert fake.objects[("jobs", NAMESPACE, job)]["metadata"]["labels"][EVALUATION_LABEL] == evaluation
    assert fake.writes.count(f"create Job/{job}") == 2
