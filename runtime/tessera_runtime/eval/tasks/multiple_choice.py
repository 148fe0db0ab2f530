"""multipleChoice: pick the choice with the highest log-likelihood after the prompt; accuracy.

The log-likelihood of a choice is the sum of the log-probabilities of its tokens given the prompt,
read from the server's prompt log-probabilities (POST /v1/completions with echo and logprobs). A
server that does not return them makes the task an Error: scoring without them would be chance.
"""

from __future__ import annotations

from collections.abc import Sequence

from tessera_operator.api.v1alpha1 import EvaluationItem, EvaluationTask

from ..client import NoPromptLogprobs, OpenAIClient
from ..data import choice_index
from ..scoring import TaskScore, criteria, score_binary
from .context import TaskContext, gather_counted

METRICS = ("accuracy", "accuracyNorm")


def continuation(prompt: str, choice: str) -> str:
    """The choice as it follows the prompt (a space between them unless one of them has it)."""
    if prompt.endswith((" ", "\n")) or choice.startswith((" ", "\n")):
        return choice
    return " " + choice


def choice_loglikelihood(
    prompt: str,
    tokens: Sequence[str],
    logprobs: Sequence[float | None],
    offsets: Sequence[int],
    choice_end: int,
) -> float:
    """Sum of the log-probabilities of the tokens that cover text[len(prompt):choice_end].

    A token straddling the boundary counts with the choice: it carries the choice's first characters.
    Tokens at or after choice_end were generated, not echoed, and are ignored.
    """
    start = len(prompt)
    total = 0.0
    counted = 0
    for token, logprob, offset in zip(tokens, logprobs, offsets, strict=True):
        if offset >= choice_end:
            break
        if offset + len(token) <= start:
            continue
        if logprob is None:
            raise NoPromptLogprobs("the server returned no log-probability for a token of the choice")
        total += logprob
        counted += 1
    if counted == 0:
        raise NoPromptLogprobs(
            "the server's log-probabilities do not cover the choice (echo of the prompt missing)"
        )
    return total


async def _loglikelihood(client: OpenAIClient, prompt: str, choice: str) -> float:
    text = prompt + continuation(prompt, choice)
    tokens, logprobs, offsets = await client.prompt_logprobs(text)
    return choice_loglikelihood(prompt, tokens, logprobs, offsets, len(text))


def predictions(items: Sequence[EvaluationItem], scores: Sequence[float], normalise: bool) -> list[int]:
    """Index of the best choice of every item, from the flat list of choice scores."""
    chosen: list[int] = []
    position = 0
    for item in items:
        values = list(scores[position : position + len(item.choices)])
        if normalise:
            values = [v / max(1, len(c.encode("utf-8"))) for v, c in zip(values, item.choices, strict=True)]
        chosen.append(max(range(len(values)), key=lambda i: values[i]))
        position += len(item.choices)
    return chosen


async def measure(
    task: EvaluationTask,
    items: Sequence[EvaluationItem],
    candidate: OpenAIClient,
    baseline: OpenAIClient,
    context: TaskContext,
) -> TaskScore:
    """Measure accuracy of both endpoints on the same items."""
    metric = task.metric or "accuracy"
    if metric not in METRICS:
        raise ValueError(f"multipleChoice measures {' or '.join(METRICS)}, not {metric}")
    pairs = [(item.prompt or "", choice) for item in items for choice in item.choices]
    calls = [_loglikelihood(client, p, c) for client in (candidate, baseline) for p, c in pairs]
    scores = await gather_counted(context, calls)
    normalise = metric == "accuracyNorm"
    answers = [choice_index(item) for item in items]
    cand = predictions(items, scores[: len(pairs)], normalise)
    base = predictions(items, scores[len(pairs) :], normalise)
    return score_binary(
        metric=metric,
        candidate_correct=[p == a for p, a in zip(cand, answers, strict=True)],
        baseline_correct=[p == a for p, a in zip(base, answers, strict=True)],
        rule=criteria(task, context.alpha, higher_is_better=True),
        resamples=context.resamples,
        seed=task.seed,
    )
