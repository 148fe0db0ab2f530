"""`EvaluationSuite` (what to measure) and `ModelEvaluation` (an immutable record of one measurement)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from .base import API_VERSION, CONDITIONS_EXTRA, ApiObject, Condition, ConfigMapKeyRef, cel, k8s_extra

TaskKind = Literal["multipleChoice", "exactMatch", "perplexity", "counterfactualBias", "latency"]
Verdict = Literal["Pass", "Fail", "Inconclusive", "Error"]

_SHORT: dict[str, Any] = {"items": {"type": "string", "maxLength": 1024}}


class EvaluationItem(ApiObject):
    """One inline item. Which fields apply depends on the task kind."""

    prompt: str | None = Field(default=None, max_length=16384)
    """multipleChoice, exactMatch: the question or prompt."""
    choices: list[str] = Field(default_factory=list, max_length=26, json_schema_extra=_SHORT)
    """multipleChoice: the possible answers."""
    answer: str | None = Field(default=None, max_length=1024)
    """multipleChoice: the correct choice (its text or its index as a string); exactMatch: the expected answer."""
    pattern: str | None = Field(default=None, max_length=1024)
    """exactMatch: a regular expression the answer must match instead of `answer`."""
    text: str | None = Field(default=None, max_length=65536)
    """perplexity: a passage of text."""
    template: str | None = Field(default=None, max_length=16384)
    """counterfactualBias: a prompt with a {value} placeholder filled with each attribute value."""


class CounterfactualAttribute(ApiObject):
    """counterfactualBias: the groups compared and the values that stand for each."""

    name: str = Field(max_length=64)
    """Name of the attribute (for example gender or origin)."""
    groups: dict[str, Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=64)]] = Field(
        max_length=16)
    """Group name to the values (names, pronouns, ...) that stand for it."""
    refusal_patterns: list[str] = Field(default_factory=list, max_length=32, json_schema_extra=_SHORT)
    """Regular expressions that mark an answer as a refusal."""
    positive_patterns: list[str] = Field(default_factory=list, max_length=32, json_schema_extra=_SHORT)
    """Regular expressions that mark an answer as the favourable outcome (for example 'yes')."""


class LatencyProfile(ApiObject):
    """latency: the requests sent."""

    prompt_tokens: int = Field(default=128, ge=1, le=131072)
    """Approximate prompt length of each request."""
    max_tokens: int = Field(default=32, ge=1, le=8192)
    """Output tokens per request."""
    requests: int = Field(default=20, ge=2, le=10000)
    """Requests sent to each endpoint."""
    concurrency: int = Field(default=1, ge=1, le=256)
    """Requests in flight at once."""


class TaskData(ApiObject):
    """Where a task's items come from: exactly one source."""

    inline: list[EvaluationItem] | None = Field(default=None, max_length=2000)
    """Items written in the suite."""
    config_map_ref: ConfigMapKeyRef | None = None
    """A ConfigMap key holding the items as JSON lines or a YAML list."""
    file: str | None = Field(default=None, max_length=1024)
    """A path on a volume mounted into the evaluation Job."""
    builtin: str | None = Field(default=None, max_length=128)
    """A built-in set shipped with Tessera (arithmetic, facts, prose, bias-names, bias-pronouns, ...)."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("[has(self.inline), has(self.configMapRef), has(self.file), has(self.builtin)]"
                    ".filter(x, x).size() == 1",
                    "data needs exactly one of inline, configMapRef, file or builtin"),
            ]
        )
    )


class EvaluationTask(ApiObject):
    """One measurement of the candidate against the baseline."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Task name, unique in the suite."""
    kind: TaskKind
    """multipleChoice, exactMatch, perplexity, counterfactualBias or latency."""
    data: TaskData | None = None
    """Items of the task (latency needs none)."""
    metric: str | None = Field(default=None, max_length=64)
    """Metric to compare (default per kind: accuracy, exactMatch, perplexity, maxGroupGap, ttftP95)."""
    margin: float | None = Field(default=None, ge=0)
    """Non-inferiority margin: the candidate may be worse than the baseline by at most this much."""
    threshold: float | None = None
    """Absolute bound the candidate must meet on its own (for example an accuracy floor or a gap ceiling)."""
    sample_size: int | None = Field(default=None, ge=1, le=100000)
    """Items to use (a seeded sample); default: all."""
    seed: int = Field(default=0, ge=0)
    """Seed for sampling and bootstrap."""
    attribute: CounterfactualAttribute | None = None
    """counterfactualBias: the attribute and its groups."""
    latency: LatencyProfile | None = None
    """latency: the requests sent."""
    normalize: bool = True
    """exactMatch: compare case-folded and whitespace-normalized answers."""
    max_tokens: int = Field(default=32, ge=1, le=4096)
    """exactMatch and counterfactualBias: tokens generated per item."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("self.kind == 'latency' || has(self.data)", "this task kind needs data", field_path=".data"),
                cel("self.kind != 'counterfactualBias' || has(self.attribute)",
                    "counterfactualBias needs attribute", field_path=".attribute"),
                cel("has(self.margin) || has(self.threshold)",
                    "a task needs a margin (non-inferiority) or a threshold (absolute bound)", field_path=".margin"),
            ]
        )
    )


class EvaluationSuiteSpec(ApiObject):
    """A set of tasks a candidate must pass."""

    tasks: list[EvaluationTask] = Field(min_length=1, max_length=32)
    """The tasks."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """Confidence level of the intervals (one-sided tests at 1 - confidence, Holm-corrected across tasks)."""
    timeout: str = Field(default="30m", max_length=32, pattern=r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
    """Longest an evaluation may run before it ends in Error."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("self.tasks.all(t, self.tasks.filter(u, u.name == t.name).size() == 1)",
                    "task names must be unique", field_path=".tasks"),
            ]
        )
    )


class EvaluationSuite(ApiObject):
    """A reusable set of evaluation tasks, referenced by Models' rollout policies."""

    api_version: Literal["tessera.dev/v1alpha1"] = API_VERSION
    kind: Literal["EvaluationSuite"] = "EvaluationSuite"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: EvaluationSuiteSpec


class EvaluatedVersion(ApiObject):
    """One side of the comparison."""

    version: str = Field(max_length=64)
    """Version hash (or a label for standalone runs)."""
    revision: str | None = Field(default=None, max_length=256)
    """spec.source.revision of that version."""
    endpoint: str | None = Field(default=None, max_length=1024)
    """URL that was evaluated."""


class SuiteRef(ApiObject):
    """The suite used and the digest of its data, so the record says exactly what was measured."""

    name: str = Field(max_length=253)
    """EvaluationSuite name."""
    digest: str = Field(max_length=128)
    """sha256 of the suite spec and all the items it used."""


class ModelEvaluationSpec(ApiObject):
    """What was compared. Immutable."""

    model: str = Field(max_length=253)
    """Name of the Model (same namespace), or a label for standalone runs."""
    candidate: EvaluatedVersion
    """The version under test."""
    baseline: EvaluatedVersion
    """The version it is compared with."""
    suite: SuiteRef
    """The suite and the digest of its data."""


class TaskResult(ApiObject):
    """Figures of one task."""

    name: str = Field(max_length=63)
    """Task name."""
    kind: TaskKind
    """Task kind."""
    metric: str = Field(max_length=64)
    """Metric compared."""
    candidate: float | None = None
    """Metric of the candidate."""
    baseline: float | None = None
    """Metric of the baseline."""
    difference: float | None = None
    """candidate - baseline, oriented so that higher is better."""
    ci_lower: float | None = None
    """Lower bound of the confidence interval of the difference."""
    ci_upper: float | None = None
    """Upper bound of the confidence interval of the difference."""
    margin: float | None = None
    """Non-inferiority margin used."""
    threshold: float | None = None
    """Absolute bound used."""
    p_value: float | None = Field(default=None, ge=0, le=1)
    """p-value of the non-inferiority test (Holm-adjusted)."""
    test: str | None = Field(default=None, max_length=64)
    """Statistical test used."""
    samples: int = Field(default=0, ge=0)
    """Paired items measured."""
    data_digest: str | None = Field(default=None, max_length=128)
    """sha256 of the items used."""
    verdict: Verdict
    """Verdict of this task."""
    reason: str = Field(default="", max_length=4096)
    """Why."""
    details: dict[str, float] = Field(default_factory=dict, max_length=64)
    """Extra figures (per-group rates, percentiles, ...)."""


class ModelEvaluationResult(ApiObject):
    """The outcome, written once."""

    verdict: Verdict
    """Pass, Fail, Inconclusive or Error."""
    reason: str = Field(max_length=4096)
    """Why, in one or two sentences."""
    tasks: list[TaskResult] = Field(default_factory=list, max_length=32)
    """Per-task figures."""
    started: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the evaluation started."""
    finished: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When it finished."""


class ModelEvaluationStatus(ApiObject):
    """The evaluation's result; once set, it never changes."""

    result: ModelEvaluationResult | None = None
    """The outcome (immutable once written)."""
    conditions: list[Condition] = Field(default_factory=list, max_length=8, json_schema_extra=CONDITIONS_EXTRA)
    """Ready once the result is written."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation this status describes."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("!has(oldSelf.result) || (has(self.result) && self.result == oldSelf.result)",
                    "the result of a ModelEvaluation is immutable once written", reason="FieldValueForbidden"),
            ]
        )
    )


class ModelEvaluation(ApiObject):
    """An immutable record of one evaluation of a candidate against a baseline."""

    api_version: Literal["tessera.dev/v1alpha1"] = API_VERSION
    kind: Literal["ModelEvaluation"] = "ModelEvaluation"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelEvaluationSpec
    status: ModelEvaluationStatus | None = None
