"""Run an EvaluationSuite against a candidate and a baseline endpoint; produce a ModelEvaluation.

Tasks run one after another (a latency task must not compete with an accuracy task for the same
servers); inside a task, requests run concurrently up to each client's limit. Every task sends the
same items to both endpoints, so all comparisons are paired. A task that cannot be measured ends in
Error with its reason; the others still run. The suite's timeout bounds the whole evaluation.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tessera_operator.api.v1alpha1 import (
    EvaluationSuite,
    EvaluationTask,
    ModelEvaluation,
    ModelEvaluationResult,
    ModelEvaluationSpec,
    ModelEvaluationStatus,
    ServiceLevelObjective,
    TaskResult,
    Verdict,
)
from tessera_operator.api.v1alpha1.base import Condition
from tessera_operator.api.v1alpha1.evaluation import EvaluatedVersion, SuiteRef

from .client import ClientSettings, Endpoint, EndpointError, OpenAIClient
from .data import ConfigMapReader, DataError, prepare_items, suite_digest
from .tasks import MEASURES, TaskContext
from .verdicts import TaskOutcome, overall, task_results

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Kubernetes-style duration such as 30m, 1h30m or 500ms."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(v + u for v, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(value) * _UNIT_SECONDS[unit] for value, unit in parts)


def now_rfc3339() -> str:
    """The current time, RFC 3339 in UTC with a Z suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProgressSink:
    """Receives progress; the default ignores it (the CLI shows a rich progress bar instead)."""

    def task_started(self, name: str) -> None:
        """A task begins."""

    def set_total(self, name: str, total: int) -> None:
        """The task will send `total` requests."""

    def advance(self, name: str, count: int) -> None:
        """`count` more requests finished."""

    def task_finished(self, name: str, verdict: str) -> None:
        """A task ended with this verdict."""


@dataclass(frozen=True)
class EvaluationRequest:
    """Everything one evaluation needs."""

    suite: EvaluationSuite
    suite_name: str
    model: str
    candidate: Endpoint
    baseline: Endpoint
    candidate_version: str = "candidate"
    baseline_version: str = "baseline"
    candidate_revision: str | None = None
    baseline_revision: str | None = None
    slo: ServiceLevelObjective | None = None
    read_config_map: ConfigMapReader | None = None
    client: ClientSettings = field(default_factory=ClientSettings)
    resamples: int = 2000
    name: str | None = None
    """metadata.name of the ModelEvaluation."""
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def placeholder_suite() -> EvaluationSuite:
    """A stand-in suite for requests whose real suite could not be read (see failed_evaluation)."""
    return EvaluationSuite.model_validate(
        {"spec": {"tasks": [{"name": "unavailable", "kind": "latency", "margin": 0}]}}
    )


def failed_evaluation(request: EvaluationRequest, reason: str) -> ModelEvaluation:
    """An Error ModelEvaluation for an evaluation that could not start, so the failure is on record."""
    now = now_rfc3339()
    return _evaluation(request, "Error", reason, [], now, now, "sha256:" + "0" * 64)


async def run_evaluation(request: EvaluationRequest, progress: ProgressSink | None = None) -> ModelEvaluation:
    """Evaluate the candidate against the baseline and return the ModelEvaluation (not yet stored)."""
    sink = progress or ProgressSink()
    started = now_rfc3339()
    spec = request.suite.spec
    alpha = 1.0 - spec.confidence
    deadline = time.monotonic() + parse_duration(spec.timeout)
    outcomes: list[TaskOutcome] = []
    digests: list[str] = []
    async with (
        OpenAIClient(request.candidate, request.client) as candidate,
        OpenAIClient(request.baseline, request.client) as baseline,
    ):
        for task in spec.tasks:
            sink.task_started(task.name)
            outcome = await _run_task(request, task, candidate, baseline, alpha, deadline, sink)
            if outcome.digest:
                digests.append(outcome.digest)
            outcomes.append(outcome)
            sink.task_finished(task.name, "Error" if outcome.score is None else "measured")
    results = task_results(outcomes, alpha)
    verdict, reason = overall(results)
    digest = suite_digest(request.suite, digests)
    return _evaluation(request, verdict, reason, results, started, now_rfc3339(), digest)


def _evaluation(
    request: EvaluationRequest,
    verdict: Verdict,
    reason: str,
    results: list[TaskResult],
    started: str,
    finished: str,
    digest: str,
) -> ModelEvaluation:
    metadata: dict[str, object] = {}
    if request.name:
        metadata["name"] = request.name
    if request.namespace:
        metadata["namespace"] = request.namespace
    if request.labels:
        metadata["labels"] = dict(request.labels)
    return ModelEvaluation(
        metadata=metadata,
        spec=ModelEvaluationSpec(
            model=request.model,
            candidate=EvaluatedVersion(
                version=request.candidate_version,
                revision=request.candidate_revision,
                endpoint=request.candidate.url,
            ),
            baseline=EvaluatedVersion(
                version=request.baseline_version,
                revision=request.baseline_revision,
                endpoint=request.baseline.url,
            ),
            suite=SuiteRef(name=request.suite_name, digest=digest),
        ),
        status=ModelEvaluationStatus(
            result=ModelEvaluationResult(
                verdict=verdict, reason=reason[:4096], tasks=results, started=started, finished=finished
            ),
            conditions=[
                Condition(
                    type="Ready",
                    status="True",
                    last_transition_time=finished,
                    reason=verdict,
                    message="The result is written and will not change.",
                )
            ],
        ),
    )


async def _run_task(
    request: EvaluationRequest,
    task: EvaluationTask,
    candidate: OpenAIClient,
    baseline: OpenAIClient,
    alpha: float,
    deadline: float,
    sink: ProgressSink,
) -> TaskOutcome:
    try:
        prepared = prepare_items(task, request.read_config_map)
    except DataError as error:
        return TaskOutcome(task, None, error=str(error))
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        timeout = request.suite.spec.timeout
        return TaskOutcome(task, prepared.digest, error=f"not run: the suite's timeout of {timeout} expired")
    context = TaskContext(
        alpha=alpha,
        resamples=request.resamples,
        slo=request.slo,
        advance=_bind(sink.advance, task.name),
        set_total=_bind(sink.set_total, task.name),
    )
    try:
        score = await asyncio.wait_for(
            MEASURES[task.kind](task, prepared.items, candidate, baseline, context), timeout=remaining
        )
    except TimeoutError:
        return TaskOutcome(
            task,
            prepared.digest,
            error=f"timed out: the suite's timeout of {request.suite.spec.timeout} expired",
        )
    except EndpointError as error:
        return TaskOutcome(task, prepared.digest, error=str(error))
    except (ValueError, ArithmeticError, re.error) as error:
        return TaskOutcome(task, prepared.digest, error=f"cannot score: {error}")
    return TaskOutcome(task, prepared.digest, score=score)


def _bind(method: Callable[[str, int], None], name: str) -> Callable[[int], None]:
    def bound(count: int) -> None:
        method(name, count)

    return bound
