"""The evaluation gate on the real model: SmolLM2 against itself passes; a damaged copy fails.

The damaged copy is made here from the same weights: Gaussian noise as large as each weight matrix's
own spread, from a fixed seed, saved as safetensors and served by a second `tessera-runtime serve`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from runtime_server import ServerProcess, start_server

from tessera_operator.api.v1alpha1 import EvaluationSuite, ModelEvaluation
from tessera_runtime.eval.client import ClientSettings, Endpoint
from tessera_runtime.eval.damage import make_damaged_copy
from tessera_runtime.eval.report import print_report
from tessera_runtime.eval.runner import EvaluationRequest, run_evaluation

# Building the damaged copy and loading two servers takes minutes: a `long` test (make test-long).
pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.long]

SERVER_FLAGS = ("--max-batch-size", "8", "--max-queue", "128", "--drain-timeout", "5")
SUITE = EvaluationSuite.model_validate(
    {
        "metadata": {"name": "smoke"},
        "spec": {
            "timeout": "40m",
            "tasks": [
                {"name": "facts", "kind": "multipleChoice", "data": {"builtin": "facts"}, "sampleSize": 30,
                 "margin": 0.1},
                {"name": "prose", "kind": "perplexity", "data": {"builtin": "prose"}, "sampleSize": 8,
                 "margin": 0.05},
            ],
        },
    }
)  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """The real model and its damaged copy, each behind its own server."""
    damaged_dir = make_damaged_copy(tmp_path_factory.mktemp("damaged") / "smollm2-noisy")
    logs = tmp_path_factory.mktemp("eval-servers")
    healthy = start_server(logs, *SERVER_FLAGS)
    damaged = start_server(logs, *SERVER_FLAGS, model=damaged_dir)
    try:
        healthy.wait_ready(600)
        damaged.wait_ready(600)
        yield healthy, damaged
    finally:
        healthy.stop()
        damaged.stop()


def evaluate(candidate: ServerProcess, baseline: ServerProcess) -> ModelEvaluation:
    request = EvaluationRequest(
        suite=SUITE, suite_name="smoke", model="smollm2",
        candidate=Endpoint(candidate.base_url), baseline=Endpoint(baseline.base_url),
        client=ClientSettings(concurrency=8, timeout_s=600, retries=2),
    )  # fmt: skip
    evaluation = asyncio.run(run_evaluation(request))
    print_report(evaluation)  # shown with -s, and in the report of a failing test
    return evaluation


def test_smollm2_against_itself_passes(servers: tuple[ServerProcess, ServerProcess]) -> None:
    healthy, _ = servers
    result = evaluate(healthy, healthy).status
    assert result is not None and result.result is not None
    assert result.result.verdict == "Pass", result.result.reason
    facts = result.result.tasks[0]
    assert (facts.candidate or 0) > 0.5  # well above chance (0.25) on simple facts
    assert facts.difference == 0.0 and facts.samples == 30


def test_a_damaged_copy_fails(servers: tuple[ServerProcess, ServerProcess]) -> None:
    healthy, damaged = servers
    result = evaluate(damaged, healthy).status
    assert result is not None and result.result is not None
    verdicts = {task.name: task.verdict for task in result.result.tasks}
    assert verdicts == {"facts": "Fail", "prose": "Fail"}, result.result.reason
    assert result.result.verdict == "Fail"
    prose = result.result.tasks[1]
    assert (prose.candidate or 0) > 3 * (prose.baseline or 1)
