"""Bad input (issue 14): generated Model, EvaluationSuite and ModelEvaluation manifests, valid and
invalid, sent to the real apiserver with a running operator.

Every case ends one of two ways: refused, with the apiserver's message naming the offending field;
or accepted and (for Models) reconciled to Ready, or to Degraded=True with a reason and a message,
within a bounded time. `tessera validate` (offline) must agree with the apiserver on every case.
The operator must stay up, log no unhandled exception, and never retry faster than its backoff;
once the Models settle it must go quiet (no status writes while nothing changes).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from manifest_strategies import Case, cases, categories
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    OperatorProcess,
    condition,
    kube_fixture,
    operator_fixture,
    tessera_crds_fixture,
    write_counts,
)
from typer.testing import CliRunner

from tessera_operator.cli import app as tessera_cli
from tessera_operator.k8s import Kube, KubeError
from tessera_operator.k8s.resources import MODEL, MODEL_EVALUATION, Resource
from tessera_operator.validation import validate_manifest

pytestmark = pytest.mark.cluster
Json = dict[str, Any]
EVALUATION_SUITE = Resource("tessera.dev/v1alpha1", "EvaluationSuite", "evaluationsuites")
RESOURCES = {"Model": MODEL, "EvaluationSuite": EVALUATION_SUITE, "ModelEvaluation": MODEL_EVALUATION}
SETTLE_SECONDS = 180.0  # from creation to Ready or Degraded (refreshes every 5 s here, but skipped while workers are busy)
IN_FLIGHT = 12  # accepted Models reconciling at once (bounded: kwok pods and the shared machine)
KEEP_FOR_QUIET_CHECK = 10
REFRESH_SECONDS = 5.0  # TESSERA_REFRESH_SECONDS of the test operator (operator_helpers.OPERATOR_ENV)
UNHANDLED = re.compile(r"Traceback \(most recent call last\)|failed with an exception|Unhandled|CRITICAL")
VERDICT = re.compile(r"^(?P<mark>[✓✗]) \S+\[(?P<index>[0-9]+)\]", re.MULTILINE)
RETRY = re.compile(r"^(?P<time>\S+ \S+) WARNING tessera_operator\.reconcile: reconcile of (?P<model>\S+) "
                   r"failed .*; retrying in (?P<delay>[0-9.]+) s$", re.MULTILINE)


@dataclass
class Pending:
    case: Case
    deadline: float


@dataclass
class Campaign:
    """Sends the cases, checks each answer, and follows accepted Models until they settle."""

    kube: Kube
    namespace: str
    operator: OperatorProcess
    outcomes: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    pending: dict[str, Pending] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)
    """One condition message per settled outcome, for the report."""
    sent: list[tuple[Json, bool]] = field(default_factory=list)
    serial: int = 0

    def run(self, case: Case) -> None:
        """One case: offline verdict, apiserver verdict, and the checks that relate them."""
        assert self.operator.alive(), "the operator process died"
        self.serial += 1
        manifest = {**case.manifest, "metadata": {**case.manifest["metadata"],
                                                  "name": f"c{self.serial}-{case.name}"}}
        offline = validate_manifest(manifest)
        resource = RESOURCES[case.kind]
        try:
            self.kube._raw("post", resource.path(self.namespace), body=manifest, field_manager="bad-input-tests",
                           query_params=[("fieldValidation", "Strict")])
            refused: KubeError | None = None
        except KubeError as error:
            refused = error
        self.sent.append((manifest, refused is None))
        self.mutations[case.mutation] += 1
        shown = yaml.safe_dump(manifest, width=200)[:3000]
        if refused is not None:
            self.outcomes[f"{case.kind} rejected"] += 1
            assert refused.status in (400, 422), f"refused with HTTP {refused.status}: {refused.message}\n{shown}"
            assert case.field is not None, f"a valid {case.kind} was refused: {refused.message}\n{shown}"
            assert case.field in refused.message, (
                f"the refusal does not name {case.field} ({case.mutation}): {refused.message}\n{shown}")
            assert offline, f"the apiserver refused it but `tessera validate` accepts it: {refused.message}\n{shown}"
            assert any(case.field in f"{e.path}: {e.message}" for e in offline), (
                f"`tessera validate` does not name {case.field}: {[str(e) for e in offline]}")
            return
        self.outcomes[f"{case.kind} accepted"] += 1
        assert not case.must_reject, f"accepted although {case.mutation} at {case.field}:\n{shown}"
        assert not offline, f"accepted by the apiserver, refused offline: {[str(e) for e in offline]}\n{shown}"
        name = manifest["metadata"]["name"]
        if case.kind != "Model":
            assert self.kube.get(resource, self.namespace, name) is not None
            self.kube.delete(resource, self.namespace, name)
            return
        self.pending[name] = Pending(case, time.monotonic() + SETTLE_SECONDS)
        while len(self.pending) >= IN_FLIGHT:
            self.settle()

    def settle(self) -> None:
        """One look at the pending Models: record and remove those that settled (or ran out of time)."""
        models = {m["metadata"]["name"]: m for m in self.kube.list(MODEL, self.namespace)}
        for name, pending in list(self.pending.items()):
            model = models.get(name)
            verdict = settled(model) if model is not None else "gone"
            if verdict is None and time.monotonic() < pending.deadline:
                continue
            del self.pending[name]
            if verdict is None or verdict == "gone":
                status = yaml.safe_dump((model or {}).get("status"), width=200)
                self.failures.append(f"Model {name} ({pending.case.mutation}) did not settle within "
                                     f"{SETTLE_SECONDS:.0f} s: {verdict or 'status now'}:\n{status}\n"
                                     f"spec: {yaml.safe_dump(pending.case.manifest['spec'], width=200)}")
                continue
            self.outcomes[verdict] += 1
            shown = condition(model or {}, "Degraded" if "Degraded" in verdict else "Ready") or {}
            self.messages.setdefault(verdict, str(shown.get("message"))[:300])
            if verdict.endswith("ApplyFailed"):
                self.messages.setdefault(f"{verdict} ({name})", str(shown.get("message"))[:300])
            if len(self.kept) < KEEP_FOR_QUIET_CHECK:
                self.kept.append(name)
            else:
                self.kube.delete(MODEL, self.namespace, name)
        if self.pending:
            time.sleep(0.5)

    def drain(self) -> None:
        while self.pending:
            self.settle()


def settled(model: Json) -> str | None:
    """`Model Ready/<reason>` or `Model Degraded/<reason>` once the current generation got there."""
    status = model.get("status") or {}
    if status.get("observedGeneration") != model["metadata"].get("generation"):
        return None
    ready, degraded = condition(model, "Ready") or {}, condition(model, "Degraded") or {}
    if ready.get("status") == "True":
        return f"Model Ready/{ready.get('reason')}"
    if degraded.get("status") == "True" and degraded.get("reason") and degraded.get("message"):
        return f"Model Degraded/{degraded['reason']}"
    return None


def retries_faster_than_backoff(log: str) -> list[str]:
    """Reconcile retries that came sooner than the delay the previous failure announced."""
    last: dict[str, tuple[datetime, float]] = {}
    early = []
    for match in RETRY.finditer(log):
        at = datetime.strptime(match["time"], "%Y-%m-%d %H:%M:%S,%f")
        model, delay = match["model"], float(match["delay"])
        if model in last:
            previous, announced = last[model]
            if (at - previous).total_seconds() < 0.9 * announced:
                early.append(f"{model}: retried after {(at - previous).total_seconds():.1f} s, backoff {announced} s")
        last[model] = (at, delay)
    return early


def offline_cli_agrees(sent: list[tuple[Json, bool]], folder: Path) -> list[str]:
    """`tessera validate` on every manifest sent (one multi-document file): its ✓/✗ per manifest must
    match the apiserver's answer."""
    path = folder / "cases.yaml"
    path.write_text(yaml.safe_dump_all([manifest for manifest, _ in sent], allow_unicode=True))
    result = CliRunner().invoke(tessera_cli, ["validate", str(path)], env={"COLUMNS": "100000"})
    verdicts = {int(m["index"]): m["mark"] == "✓" for m in VERDICT.finditer(result.output)}
    assert len(verdicts) == len(sent), f"`tessera validate` judged {len(verdicts)} of {len(sent)}: {result.output[-2000:]}"
    return [f"{manifest['metadata']['name']}: apiserver {'accepted' if accepted else 'refused'}, "
            f"`tessera validate` {'accepted' if verdicts[index] else 'refused'}"
            for index, (manifest, accepted) in enumerate(sent) if verdicts[index] != accepted]


def model_status_writes(kube: Kube) -> float:
    return float(write_counts(kube, {"models"}).get("models/status", 0.0))


def run_campaign(kube: Kube, namespace: str, operator: OperatorProcess, tmp_path: Path,
                 examples: dict[str, tuple[int, int]]) -> None:
    """Per kind, `valid` valid manifests and `broken` manifests per way of breaking one (each CEL rule,
    each schema breakage); send them, then check the operator's health and quiet."""
    campaign = Campaign(kube, namespace, operator)
    started = time.monotonic()
    timings = {}
    requested = 0
    for kind, (valid, broken) in examples.items():
        kind_started = time.monotonic()
        for category in categories(kind):
            count = valid if category == "valid" else broken
            requested += count

            @settings(max_examples=count, deadline=None, database=None, print_blob=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=cases(kind, "m", category))
            def check(case: Case) -> None:
                campaign.run(case)

            check()
        timings[kind] = f"{time.monotonic() - kind_started:.0f} s"
    campaign.drain()
    elapsed = time.monotonic() - started
    # Quiet once settled: the Models kept alive (Ready and Degraded) get no status writes while
    # nothing changes, over several refresh periods.
    time.sleep(REFRESH_SECONDS)  # the last deletions' effects (freed GPUs, scheduler messages) reach status
    writes_before = model_status_writes(kube)
    time.sleep(3 * REFRESH_SECONDS)
    quiet_writes = model_status_writes(kube) - writes_before
    # Deleting works for every Model, whatever it held: the operator lifts its finalizer.
    for model in kube.list(MODEL, namespace):
        kube.delete(MODEL, namespace, model["metadata"]["name"])
    deletion_started = deadline = time.monotonic()
    deadline += SETTLE_SECONDS
    while kube.list(MODEL, namespace) and time.monotonic() < deadline:
        time.sleep(1)
    stuck = [(m["metadata"]["name"], m["metadata"].get("finalizers")) for m in kube.list(MODEL, namespace)]
    timings["deleting the Models"] = f"{time.monotonic() - deletion_started:.0f} s"
    log = operator.log_text()
    cli_started = time.monotonic()
    cli_disagreements = offline_cli_agrees(campaign.sent, tmp_path)
    timings["tessera validate"] = f"{time.monotonic() - cli_started:.0f} s"
    report = (f"\n{requested} requested, {len(campaign.sent)} cases sent in {elapsed:.0f} s {timings}: "
              f"{dict(sorted(campaign.outcomes.items()))}\nmutations: {dict(sorted(campaign.mutations.items()))}\n"
              f"status writes in {3 * REFRESH_SECONDS:.0f} s of quiet with {len(campaign.kept)} settled Models: "
              f"{quiet_writes:.0f}\n" + "\n".join(f"  {k}: {v}" for k, v in sorted(campaign.messages.items())))
    print(report)
    assert not campaign.failures, "\n\n".join(campaign.failures[:5])
    assert not stuck, f"Models not deleted after {SETTLE_SECONDS:.0f} s: {stuck}"
    assert operator.alive(), "the operator process died"
    unhandled = [line for line in log.splitlines() if UNHANDLED.search(line)]
    assert not unhandled, "unhandled exceptions in the operator's log:\n" + "\n".join(unhandled[:10])
    assert not retries_faster_than_backoff(log)
    # A retry loop writes on every reconcile; a settled Model is written at most when what it reports
    # changes (in practice none, or a scheduler message as other Models' pods go).
    assert quiet_writes <= len(campaign.kept), (
        f"{quiet_writes} status writes on {len(campaign.kept)} settled Models in {3 * REFRESH_SECONDS:.0f} s")
    assert not cli_disagreements, "\n".join(cli_disagreements[:10])
    assert sum(v for k, v in campaign.outcomes.items() if k.startswith("Model Ready")) > 0
    assert sum(v for k, v in campaign.outcomes.items() if k.startswith("Model Degraded")) > 0
    assert sum(v for k, v in campaign.outcomes.items() if k.endswith("rejected")) > 0


def test_generated_manifests_are_refused_by_field_or_reconciled(
    kube: Kube, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    run_campaign(kube, namespace, operator, tmp_path,
                 {"Model": (24, 2), "EvaluationSuite": (10, 2), "ModelEvaluation": (6, 2)})


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_many_generated_manifests_are_refused_by_field_or_reconciled(
    kube: Kube, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    run_campaign(kube, namespace, operator, tmp_path,
                 {"Model": (200, 20), "EvaluationSuite": (60, 12), "ModelEvaluation": (40, 12)})

