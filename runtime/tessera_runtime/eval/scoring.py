"""From paired measurements to the figures and one-sided p-values of one task.

Each task yields two p-values: `p_pass` (null hypothesis: the candidate is NOT acceptable, so a small
value supports Pass) and `p_fail` (null: the candidate IS acceptable, so a small value supports Fail).
A task with both a margin and a threshold must meet both: its p_pass is the larger of the two
(intersection-union test) and its p_fail the Bonferroni-corrected smaller one.
The verdict itself is taken across tasks, after Holm correction, in `verdicts.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tessera_operator.api.v1alpha1 import EvaluationTask

from . import stats


@dataclass
class TaskScore:
    """Figures of one measured task, before multiplicity correction."""

    metric: str
    candidate: float
    baseline: float | None
    difference: float | None
    """Oriented so that higher is better for the candidate."""
    ci_lower: float | None
    ci_upper: float | None
    p_pass: float
    p_fail: float
    test: str
    samples: int
    summary: str
    """One sentence with the figures, for the verdict's reason."""
    details: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Criteria:
    """Margin and threshold of a task, and which way its metric is better."""

    margin: float | None
    threshold: float | None
    higher_is_better: bool
    alpha: float


def criteria(
    task: EvaluationTask, alpha: float, higher_is_better: bool, threshold: float | None = None
) -> Criteria:
    """The task's criteria (an explicit threshold argument stands in when the task sets none)."""
    return Criteria(
        task.margin, task.threshold if task.threshold is not None else threshold, higher_is_better, alpha
    )


def combine(passes: Sequence[float], fails: Sequence[float]) -> tuple[float, float]:
    """Join the sub-tests of one task: Pass needs every sub-test, Fail needs any."""
    if not passes:
        raise ValueError("a task needs a margin or a threshold")
    return max(passes), min(1.0, len(fails) * min(fails))


def threshold_tests(candidate: stats.Bootstrap, rule: Criteria) -> tuple[list[float], list[float]]:
    """p-values of the candidate meeting the absolute threshold (a floor or a ceiling)."""
    if rule.threshold is None:
        return [], []
    if rule.higher_is_better:
        return [candidate.p_at_most(rule.threshold)], [candidate.p_at_least(rule.threshold)]
    return [candidate.p_at_least(rule.threshold)], [candidate.p_at_most(rule.threshold)]


def score_paired(
    *,
    metric: str,
    n: int,
    figures: Callable[[Sequence[int]], tuple[float, float]],
    difference: Callable[[float, float], float],
    rule: Criteria,
    resamples: int,
    seed: int,
    test: str,
    unit: str = "",
) -> TaskScore:
    """Score a task whose items are paired: bootstrap the candidate's metric, the baseline's and their difference.

    figures(indices) -> (candidate metric, baseline metric) on those items; difference(c, b) is the
    candidate's advantage (higher is better), compared with -margin.
    """

    def with_difference(indices: Sequence[int]) -> tuple[float, float, float]:
        c, b = figures(indices)
        return c, b, difference(c, b)

    cand, base, diff = stats.bootstrap(n, with_difference, resamples, seed)
    passes, fails = threshold_tests(cand, rule)
    if rule.margin is not None:
        passes.append(diff.p_at_most(-rule.margin))
        fails.append(diff.p_at_least(-rule.margin))
    p_pass, p_fail = combine(passes, fails)
    summary = (
        f"{metric} {cand.estimate:.4g}{unit} vs baseline {base.estimate:.4g}{unit}, difference "
        f"{diff.estimate:+.4g} [{diff.lower(rule.alpha):+.4g}, {diff.upper(rule.alpha):+.4g}]"
    )
    return TaskScore(
        metric=metric, candidate=cand.estimate, baseline=base.estimate, difference=diff.estimate,
        ci_lower=diff.lower(rule.alpha), ci_upper=diff.upper(rule.alpha), p_pass=p_pass, p_fail=p_fail,
        test=test, samples=n, summary=summary,
        details={"candidateLower": cand.lower(rule.alpha), "candidateUpper": cand.upper(rule.alpha)},
    )  # fmt: skip


def score_binary(
    *,
    metric: str,
    candidate_correct: Sequence[bool],
    baseline_correct: Sequence[bool],
    rule: Criteria,
    resamples: int,
    seed: int,
) -> TaskScore:
    """Accuracy-like tasks: paired bootstrap and Tango's score interval of the difference, exact McNemar.

    A percentile bootstrap collapses to a point when (almost) no item differs between the two sides,
    and would then pass any margin on a handful of items. Tango's score interval does not, so the
    verdict takes the more cautious of the two: the reported interval is their union, and each test's
    p-value is the larger of the two methods'. The threshold (an accuracy floor) uses the exact
    binomial test.
    """
    n = len(candidate_correct)
    c = [1 if x else 0 for x in candidate_correct]
    b = [1 if x else 0 for x in baseline_correct]

    def figures(indices: Sequence[int]) -> tuple[float, float, float]:
        count = len(indices)
        cand_rate, base_rate = sum(c[i] for i in indices) / count, sum(b[i] for i in indices) / count
        return cand_rate, base_rate, cand_rate - base_rate

    candidate_only = sum(1 for x, y in zip(c, b, strict=True) if x and not y)
    baseline_only = sum(1 for x, y in zip(c, b, strict=True) if y and not x)
    cand, base, diff = stats.bootstrap(n, figures, resamples, seed)
    lower = min(
        diff.lower(rule.alpha), stats.tango_bound(candidate_only, baseline_only, n, rule.alpha, upper=False)
    )
    upper = max(
        diff.upper(rule.alpha), stats.tango_bound(candidate_only, baseline_only, n, rule.alpha, upper=True)
    )
    passes: list[float] = []
    fails: list[float] = []
    if rule.threshold is not None:
        correct = sum(c)
        passes.append(stats.binomial_test(correct, n, min(max(rule.threshold, 0.0), 1.0), "greater"))
        fails.append(stats.binomial_test(correct, n, min(max(rule.threshold, 0.0), 1.0), "less"))
    if rule.margin is not None:
        z = stats.tango_statistic(candidate_only, baseline_only, n, -rule.margin)
        passes.append(max(diff.p_at_most(-rule.margin), stats.normal_sf(z)))
        fails.append(max(diff.p_at_least(-rule.margin), stats.normal_cdf(z)))
    p_pass, p_fail = combine(passes, fails)
    return TaskScore(
        metric=metric, candidate=cand.estimate, baseline=base.estimate, difference=diff.estimate,
        ci_lower=lower, ci_upper=upper, p_pass=p_pass, p_fail=p_fail,
        test="paired bootstrap + Tango score interval + exact McNemar", samples=n,
        summary=(f"{metric} {cand.estimate:.4g} vs baseline {base.estimate:.4g}, difference "
                 f"{diff.estimate:+.4g} [{lower:+.4g}, {upper:+.4g}]"),
        details={
            "mcnemarP": stats.mcnemar_exact(candidate_only, baseline_only),
            "candidateOnlyCorrect": float(candidate_only),
            "baselineOnlyCorrect": float(baseline_only),
            "bootstrapLower": diff.lower(rule.alpha),
            "bootstrapUpper": diff.upper(rule.alpha),
        },
    )  # fmt: skip
