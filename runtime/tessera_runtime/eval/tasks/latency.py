"""latency: streamed requests of a given size; a percentile of TTFT or time per output token.

Candidate and baseline get the same requests in alternating blocks (so a slow minute of the node hurts
both), never at the same time (so they do not slow each other down). The samples are independent, so
the test against the baseline is Mann-Whitney U on the candidate's latencies and the baseline's scaled
by (1 + margin); the interval shown is a bootstrap of 1 - candidate/baseline for the percentile. The
threshold (default: the Model's SLO for that metric) bounds the candidate's percentile in seconds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from tessera_operator.api.v1alpha1 import EvaluationItem, EvaluationTask
from tessera_operator.api.v1alpha1.evaluation import LatencyProfile

from .. import stats
from ..client import OpenAIClient, TimedStream
from ..scoring import Criteria, TaskScore, combine, criteria, threshold_tests
from .context import TaskContext

_METRIC = re.compile(r"^(ttft|tpot)P(\d{2}(?:\.\d+)?|100)$")

_WORDS = [
    "the",
    "quiet",
    "river",
    "moves",
    "slowly",
    "past",
    "the",
    "old",
    "mill",
    "while",
    "farmers",
    "walk",
    "home",
    "across",
    "green",
    "fields",
    "and",
    "children",
    "play",
    "near",
    "the",
    "water",
    "under",
    "a",
    "warm",
    "evening",
    "sky",
    "full",
    "of",
    "birds",
]


def parse_metric(metric: str) -> tuple[str, float]:
    """("ttft" or "tpot", percentile) from names like ttftP95 or tpotP50."""
    match = _METRIC.match(metric)
    if not match:
        raise ValueError(f"latency metric must look like ttftP95 or tpotP50, not {metric}")
    return match.group(1), float(match.group(2))


def filler_prompt(words: int, index: int) -> str:
    """About `words` tokens of plain text; the index varies the start so no two prompts share a prefix."""
    return " ".join(_WORDS[(index + i) % len(_WORDS)] for i in range(words))


async def _collect(
    client: OpenAIClient, prompts: Sequence[str], profile: LatencyProfile, context: TaskContext
) -> list[TimedStream]:
    results = await asyncio.gather(*(client.timed_stream(p, profile.max_tokens) for p in prompts))
    context.advance(len(prompts))
    return list(results)


def _slo_threshold(kind: str, context: TaskContext) -> float | None:
    if context.slo is None:
        return None
    if kind == "ttft":
        return context.slo.time_to_first_token_seconds
    return context.slo.time_per_output_token_seconds


def score_latency(
    metric: str,
    candidate: Sequence[float],
    baseline: Sequence[float],
    rule: Criteria,
    resamples: int,
    seed: int,
) -> TaskScore:
    """Score latency samples (seconds, lower is better) of the two endpoints."""
    _, q = parse_metric(metric)
    if len(candidate) < 2 or len(baseline) < 2:
        raise ValueError("latency needs at least two timed requests on each side")
    cand_p = stats.percentile(candidate, q)
    base_p = stats.percentile(baseline, q)
    ratio = stats.unpaired_bootstrap(
        candidate,
        baseline,
        lambda c, b: 1.0 - stats.percentile(c, q) / stats.percentile(b, q),
        resamples,
        seed,
    )
    own = stats.unpaired_bootstrap(
        candidate, candidate, lambda c, _: stats.percentile(c, q), resamples, seed + 1
    )
    passes, fails = threshold_tests(own, rule)
    details = {"candidateLower": own.lower(rule.alpha), "candidateUpper": own.upper(rule.alpha)}
    if rule.margin is not None:
        scaled = [b * (1.0 + rule.margin) for b in baseline]
        passes.append(stats.mann_whitney_u(candidate, scaled, "less").p_value)
        fails.append(stats.mann_whitney_u(candidate, scaled, "greater").p_value)
        details["mannWhitneyTwoSidedP"] = stats.mann_whitney_u(candidate, baseline).p_value
    p_pass, p_fail = combine(passes, fails)
    for label, sample in (("candidate", candidate), ("baseline", baseline)):
        for level in (50.0, 95.0, 99.0):
            details[f"{label}P{int(level)}"] = stats.percentile(sample, level)
    return TaskScore(
        metric=metric, candidate=cand_p, baseline=base_p, difference=ratio.estimate,
        ci_lower=ratio.lower(rule.alpha), ci_upper=ratio.upper(rule.alpha), p_pass=p_pass, p_fail=p_fail,
        test="Mann-Whitney U (baseline scaled by 1 + margin)", samples=min(len(candidate), len(baseline)),
        summary=(f"{metric} {cand_p * 1000:.1f} ms vs baseline {base_p * 1000:.1f} ms, relative difference "
                 f"{ratio.estimate:+.3f} [{ratio.lower(rule.alpha):+.3f}, {ratio.upper(rule.alpha):+.3f}]"),
        details=details,
    )  # fmt: skip


async def measure(
    task: EvaluationTask,
    items: Sequence[EvaluationItem],
    candidate: OpenAIClient,
    baseline: OpenAIClient,
    context: TaskContext,
) -> TaskScore:
    """Time the same requests on both endpoints and compare the chosen percentile."""
    default_percentile = context.slo.percentile if context.slo is not None else 95
    metric = task.metric or f"ttftP{default_percentile}"
    kind, _ = parse_metric(metric)
    profile = task.latency or LatencyProfile()
    context.set_total(2 * profile.requests)
    samples: dict[str, list[TimedStream]] = {"candidate": [], "baseline": []}
    block = profile.concurrency
    for start in range(0, profile.requests, block):
        prompts = [
            filler_prompt(profile.prompt_tokens, i)
            for i in range(start, min(start + block, profile.requests))
        ]
        # Alternate which side goes first, so neither always meets a warm (or cold) node.
        order = [("candidate", candidate), ("baseline", baseline)]
        for side, client in order if (start // block) % 2 == 0 else reversed(order):
            samples[side].extend(await _collect(client, prompts, profile, context))

    def values(side: str) -> list[float]:
        timed = samples[side]
        return (
            [t.ttft_s for t in timed] if kind == "ttft" else [t.tpot_s for t in timed if t.tpot_s is not None]
        )

    rule = criteria(task, context.alpha, higher_is_better=False, threshold=_slo_threshold(kind, context))
    if rule.margin is None and rule.threshold is None:
        raise ValueError("latency needs a margin, a threshold, or a Model SLO for its metric")
    score = score_latency(metric, values("candidate"), values("baseline"), rule, context.resamples, task.seed)
    if task.threshold is None and rule.threshold is not None:
        score.details["sloThreshold"] = rule.threshold
    return score
