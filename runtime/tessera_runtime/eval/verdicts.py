"""Verdicts: Holm correction across the suite's tasks, then one verdict per task and one overall.

Per task, with alpha = 1 - confidence and Holm-adjusted p-values:
- Fail when the adjusted p_fail <= alpha (the candidate is shown worse than -margin, or beyond the threshold);
- Pass when the adjusted p_pass <= alpha (the candidate is shown no worse than -margin and within the threshold);
- Inconclusive otherwise (the data cannot tell);
- Error when the task could not be measured.
With one task and only a margin this is the textbook rule: Pass when the lower confidence bound of the
difference is above -margin, Fail when the upper bound is below it (up to the bootstrap's +1 smoothing). Overall: Error if any task errored, else Fail if any
failed, else Inconclusive if any was inconclusive, else Pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tessera_operator.api.v1alpha1 import EvaluationTask, TaskResult, Verdict

from . import stats
from .scoring import TaskScore

_SEVERITY: dict[Verdict, int] = {"Pass": 0, "Inconclusive": 1, "Fail": 2, "Error": 3}


@dataclass(frozen=True)
class TaskOutcome:
    """What running one task produced: a score, or the reason it could not be scored."""

    task: EvaluationTask
    digest: str | None
    score: TaskScore | None = None
    error: str | None = None


def task_results(outcomes: Sequence[TaskOutcome], alpha: float) -> list[TaskResult]:
    """One TaskResult per outcome, with Holm-adjusted p-values across the scored tasks."""
    scored = [o for o in outcomes if o.score is not None]
    adjusted_pass = stats.holm_adjust([o.score.p_pass for o in scored if o.score is not None])
    adjusted_fail = stats.holm_adjust([o.score.p_fail for o in scored if o.score is not None])
    adjusted = {id(o): (p, f) for o, p, f in zip(scored, adjusted_pass, adjusted_fail, strict=True)}
    results: list[TaskResult] = []
    for outcome in outcomes:
        task = outcome.task
        base = {"name": task.name, "kind": task.kind, "margin": task.margin, "data_digest": outcome.digest}
        score = outcome.score
        if score is None:
            results.append(
                TaskResult(
                    **base,
                    metric=task.metric or "",
                    threshold=task.threshold,
                    verdict="Error",
                    reason=(outcome.error or "the task could not be measured")[:4096],
                )
            )
            continue
        p_pass, p_fail = adjusted[id(outcome)]
        threshold = _threshold_used(task, score)
        verdict, why = _verdict(p_pass, p_fail, alpha, task.margin, threshold)
        details = dict(score.details)
        details["pFail"] = p_fail
        details["pPassUnadjusted"] = score.p_pass
        results.append(
            TaskResult(
                **base,
                metric=score.metric,
                candidate=score.candidate,
                baseline=score.baseline,
                difference=score.difference,
                ci_lower=score.ci_lower,
                ci_upper=score.ci_upper,
                threshold=threshold,
                p_value=p_pass,
                test=score.test,
                samples=score.samples,
                verdict=verdict,
                reason=f"{score.summary}; {why}"[:4096],
                details=dict(list(details.items())[:64]),
            )
        )
    return results


def _threshold_used(task: EvaluationTask, score: TaskScore) -> float | None:
    if task.threshold is not None:
        return task.threshold
    return score.details.get("sloThreshold")


def _verdict(
    p_pass: float, p_fail: float, alpha: float, margin: float | None, threshold: float | None
) -> tuple[Verdict, str]:
    bound = []
    if margin is not None:
        bound.append(f"margin {margin:g}")
    if threshold is not None:
        bound.append(f"threshold {threshold:g}")
    limits = " and ".join(bound) or "its limits"
    if p_fail <= alpha:
        return "Fail", f"worse than {limits} (Holm-adjusted p={p_fail:.3g} <= {alpha:g})"
    if p_pass <= alpha:
        return "Pass", f"within {limits} (Holm-adjusted p={p_pass:.3g} <= {alpha:g})"
    return "Inconclusive", (
        f"neither shown within nor beyond {limits} (Holm-adjusted p={p_pass:.3g} for Pass, "
        f"{p_fail:.3g} for Fail; more items or a wider margin would decide)"
    )


def overall(results: Sequence[TaskResult]) -> tuple[Verdict, str]:
    """The suite's verdict and a reason naming the tasks that decided it."""
    if not results:
        return "Error", "the suite has no tasks"
    worst: Verdict = max((r.verdict for r in results), key=lambda v: _SEVERITY[v])
    deciding = [r.name for r in results if r.verdict == worst]
    passed = sum(1 for r in results if r.verdict == "Pass")
    if worst == "Pass":
        return "Pass", f"all {len(results)} task(s) passed"
    what = {"Error": "could not be evaluated", "Fail": "failed", "Inconclusive": "were inconclusive"}[worst]
    first = next(r for r in results if r.verdict == worst)
    return (
        worst,
        f"{', '.join(deciding)} {what} ({passed}/{len(results)} passed); {first.name}: {first.reason}"[:4096],
    )
