"""exactMatch: greedy answers (temperature 0) compared with the expected answer or a regular expression."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tessera_operator.api.v1alpha1 import EvaluationItem, EvaluationTask

from ..client import OpenAIClient
from ..scoring import TaskScore, criteria, score_binary
from .context import TaskContext, gather_counted

_PUNCTUATION = " \t\n.,;:!?\"'`*()[]{}"
_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case-folded, whitespace collapsed, surrounding punctuation and quotes removed."""
    return _WHITESPACE.sub(" ", text.casefold()).strip(_PUNCTUATION)


def first_line(text: str) -> str:
    """The first line that has any text."""
    return next((line for line in text.splitlines() if line.strip()), "")


def _bounded(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] stands alone: not part of a longer word or number (12 is not in 123 or 1.25)."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    if before.isalnum() or before in "-.,":
        return False
    if after.isalnum():
        return False
    return not (after in ".," and end + 1 < len(text) and text[end + 1].isdigit())


def is_match(output: str, item: EvaluationItem, normalize: bool) -> bool:
    """Whether a generated answer matches the item.

    With `pattern`, a regular-expression search of the whole output. Otherwise, with normalisation,
    the first line must equal the answer, or begin or end with it as a whole word or number
    ("19", "19.", "12 + 7 = 19", "The answer is 19"); without normalisation, the stripped output must
    equal the answer exactly.
    """
    if item.pattern is not None:
        return re.search(item.pattern, output) is not None
    answer = item.answer or ""
    if not normalize:
        return output.strip() == answer.strip()
    line, expected = normalise(first_line(output)), normalise(answer)
    if not expected:
        return False
    if line == expected:
        return True
    if line.startswith(expected) and _bounded(line, 0, len(expected)):
        return True
    return line.endswith(expected) and _bounded(line, len(line) - len(expected), len(line))


async def measure(
    task: EvaluationTask,
    items: Sequence[EvaluationItem],
    candidate: OpenAIClient,
    baseline: OpenAIClient,
    context: TaskContext,
) -> TaskScore:
    """Measure the exact-match rate of both endpoints on the same prompts."""
    for item in items:
        if item.pattern is not None:
            try:
                re.compile(item.pattern)
            except re.error as error:
                raise ValueError(f"invalid pattern {item.pattern!r}: {error}") from error
    calls = [
        client.chat(item.prompt or "", task.max_tokens, task.seed)
        for client in (candidate, baseline)
        for item in items
    ]
    outputs = await gather_counted(context, calls)
    n = len(items)
    return score_binary(
        metric=task.metric or "exactMatch",
        candidate_correct=[
            is_match(o, item, task.normalize) for o, item in zip(outputs[:n], items, strict=True)
        ],
        baseline_correct=[
            is_match(o, item, task.normalize) for o, item in zip(outputs[n:], items, strict=True)
        ],
        rule=criteria(task, context.alpha, higher_is_better=True),
        resamples=context.resamples,
        seed=task.seed,
    )
