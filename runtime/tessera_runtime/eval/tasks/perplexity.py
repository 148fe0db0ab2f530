"""perplexity: the prompt log-probabilities of plain text; a bounded relative increase.

Both sides are normalised by the baseline's token count: the total negative log-likelihood of a text
means the same whatever the tokenizer, so the ratio of perplexities stays meaningful even when the
candidate tokenizes differently. With the same tokenizer this is the usual per-token perplexity.
The difference is 1 - candidate/baseline (higher is better); a margin of 0.05 lets the candidate's
perplexity be at most about 5% higher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tessera_operator.api.v1alpha1 import EvaluationItem, EvaluationTask

from .. import stats
from ..client import NoPromptLogprobs, OpenAIClient
from ..scoring import TaskScore, criteria, score_paired
from .context import TaskContext, gather_counted


async def text_nll(client: OpenAIClient, text: str) -> tuple[float, int]:
    """Negative log-likelihood of a text and the number of tokens it was summed over."""
    _, logprobs, offsets = await client.prompt_logprobs(text)
    total, count = 0.0, 0
    for position, (logprob, offset) in enumerate(zip(logprobs, offsets, strict=True)):
        if offset >= len(text):
            break  # a generated token, not part of the text
        if logprob is None:
            if position == 0:
                continue  # the first token has nothing before it
            raise NoPromptLogprobs("the server returned no log-probability for a token of the text")
        total -= logprob
        count += 1
    if count == 0:
        raise NoPromptLogprobs("the server returned no prompt log-probabilities for the text")
    return total, count


async def measure(
    task: EvaluationTask,
    items: Sequence[EvaluationItem],
    candidate: OpenAIClient,
    baseline: OpenAIClient,
    context: TaskContext,
) -> TaskScore:
    """Measure the perplexity of both endpoints on the same texts."""
    metric = task.metric or "perplexity"
    if metric != "perplexity":
        raise ValueError(f"perplexity measures perplexity, not {metric}")
    calls = [text_nll(client, item.text or "") for client in (candidate, baseline) for item in items]
    results = await gather_counted(context, calls)
    n = len(items)
    cand_nll = [r[0] for r in results[:n]]
    base_nll = [r[0] for r in results[n:]]
    tokens = [r[1] for r in results[n:]]

    def figures(indices: Sequence[int]) -> tuple[float, float]:
        count = sum(tokens[i] for i in indices)
        return (
            math.exp(sum(cand_nll[i] for i in indices) / count),
            math.exp(sum(base_nll[i] for i in indices) / count),
        )

    rule = criteria(task, context.alpha, higher_is_better=False)
    score = score_paired(
        metric=metric, n=n, figures=figures, difference=lambda c, b: 1.0 - c / b, rule=rule,
        resamples=context.resamples, seed=task.seed, test="paired bootstrap (+ Wilcoxon signed-rank)",
    )  # fmt: skip
    # Secondary figure: do per-text log-likelihood gains beat -log(1 + margin)? (median-type evidence)
    shift = math.log1p(task.margin) if task.margin is not None else 0.0
    gains = [(b - c) / t + shift for c, b, t in zip(cand_nll, base_nll, tokens, strict=True)]
    score.details["wilcoxonP"] = stats.wilcoxon_signed_rank(gains, "greater").p_value
    score.details["baselineTokens"] = float(sum(tokens))
    return score
