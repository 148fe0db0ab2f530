"""Task kinds: each measures the candidate and the baseline on the same items and scores the difference."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from tessera_operator.api.v1alpha1 import EvaluationItem, EvaluationTask

from ..client import OpenAIClient
from ..scoring import TaskScore
from . import bias, exact_match, latency, multiple_choice, perplexity
from .context import TaskContext

Measure = Callable[
    [EvaluationTask, Sequence[EvaluationItem], OpenAIClient, OpenAIClient, TaskContext], Awaitable[TaskScore]
]

MEASURES: dict[str, Measure] = {
    "multipleChoice": multiple_choice.measure,
    "exactMatch": exact_match.measure,
    "perplexity": perplexity.measure,
    "counterfactualBias": bias.measure,
    "latency": latency.measure,
}

__all__ = ["MEASURES", "Measure", "TaskContext"]
