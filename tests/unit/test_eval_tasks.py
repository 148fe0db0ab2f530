"""The evaluation runner and its task kinds against fake OpenAI servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tessera_operator.api.v1alpha1 import EvaluationSuite, ModelEvaluation, ServiceLevelObjective
from tessera_operator.validation import validate_manifest
from tessera_runtime.eval.client import ClientSettings, Endpoint
from tessera_runtime.eval.data import builtin_names, load_items, parse_items
from tessera_runtime.eval.runner import EvaluationRequest, run_evaluation
from tessera_runtime.eval.testing import FakeModel, FakeServer

FACTS = [
    json.loads(line)
    for line in (Path(__file__).parents[2] / "runtime/tessera_runtime/eval/builtin/facts.jsonl")
    .read_text()
    .splitlines()
]
ARITHMETIC = load_items(EvaluationSuite.model_validate(
    {"spec": {"tasks": [{"name": "a", "kind": "exactMatch", "data": {"builtin": "arithmetic"}, "margin": 0.05}]}}
).spec.tasks[0])  # fmt: skip


def suite(*tasks: dict[str, Any], confidence: float = 0.95, timeout: str = "5m") -> EvaluationSuite:
    return EvaluationSuite.model_validate(
        {"spec": {"tasks": list(tasks), "confidence": confidence, "timeout": timeout}}
    )


def evaluate(
    evaluation_suite: EvaluationSuite,
    candidate: FakeModel,
    baseline: FakeModel,
    **options: Any,
) -> ModelEvaluation:
    async def run() -> ModelEvaluation:
        async with FakeServer(candidate) as cand, FakeServer(baseline) as base:
            request = EvaluationRequest(
                suite=evaluation_suite, suite_name="test-suite", model="m",
                candidate=Endpoint(cand.url), baseline=Endpoint(base.url), resamples=1000,
                client=options.pop("client", ClientSettings(concurrency=8, timeout_s=10, retries=2, backoff_s=0.01)),
                **options,
            )  # fmt: skip
            return await run_evaluation(request)

    result = asyncio.run(run())
    assert validate_manifest(result.to_api() | {"metadata": {"name": "x"}}) == []
    return result


def facts_answers() -> dict[str, str]:
    return {item["prompt"]: item["answer"] for item in FACTS}


def arithmetic_answers() -> dict[str, str]:
    return {item.prompt or "": item.answer or "" for item in ARITHMETIC}


def test_builtin_sets_are_shipped_and_large_enough() -> None:
    assert builtin_names() == ["arithmetic", "bias-names", "bias-pronouns", "facts", "prose"]
    sizes = {}
    for name in builtin_names():
        task = {"name": "t", "kind": "perplexity", "data": {"builtin": name}, "margin": 0.1}
        sizes[name] = len(load_items(suite(task).spec.tasks[0]))
    assert sizes["facts"] >= 100 and sizes["arithmetic"] >= 100
    assert sum(sizes.values()) >= 300


MC = {"name": "facts", "kind": "multipleChoice", "data": {"builtin": "facts"}, "margin": 0.05}


def test_multiple_choice_same_model_passes() -> None:
    model = FakeModel(answers=facts_answers(), skill=0.85)
    result = evaluate(suite(MC), model, FakeModel(answers=facts_answers(), skill=0.85))
    assert result.status and result.status.result
    task = result.status.result.tasks[0]
    assert result.status.result.verdict == "Pass", task.reason
    assert task.difference == 0.0 and task.samples == 120
    assert 0.8 < (task.candidate or 0) <= 1.0
    assert task.data_digest and task.data_digest.startswith("sha256:")
    assert task.details["mcnemarP"] == 1.0
    assert result.spec.suite.digest.startswith("sha256:")


def test_multiple_choice_damaged_model_fails() -> None:
    result = evaluate(
        suite(MC), FakeModel(answers=facts_answers(), skill=0.0), FakeModel(answers=facts_answers())
    )
    assert result.status and result.status.result
    task = result.status.result.tasks[0]
    assert task.verdict == "Fail", task.reason
    assert (task.ci_upper or 0) < -0.05
    assert (task.candidate or 1) < 0.5 < (task.baseline or 0)
    assert task.details["mcnemarP"] < 1e-6
    assert result.status.result.verdict == "Fail"


def test_multiple_choice_without_prompt_logprobs_is_an_error_not_a_verdict() -> None:
    blind = FakeModel(answers=facts_answers(), prompt_logprobs=False)
    result = evaluate(suite(MC), blind, FakeModel(answers=facts_answers()))
    assert result.status and result.status.result
    assert result.status.result.verdict == "Error"
    task = result.status.result.tasks[0]
    assert task.verdict == "Error" and "log-probabilit" in task.reason
    assert task.candidate is None and task.p_value is None


def test_small_samples_are_inconclusive() -> None:
    few = {**MC, "sampleSize": 8, "margin": 0.02}
    result = evaluate(
        suite(few),
        FakeModel(answers=facts_answers(), skill=0.7),
        FakeModel(answers=facts_answers(), skill=0.8),
    )
    assert result.status and result.status.result
    assert result.status.result.tasks[0].samples == 8
    assert result.status.result.verdict == "Inconclusive", result.status.result.reason


EXACT = {
    "name": "arith",
    "kind": "exactMatch",
    "data": {"builtin": "arithmetic"},
    "margin": 0.05,
    "maxTokens": 8,
}


def test_exact_match_pass_and_fail() -> None:
    good = evaluate(
        suite(EXACT), FakeModel(answers=arithmetic_answers()), FakeModel(answers=arithmetic_answers())
    )
    bad = evaluate(
        suite(EXACT),
        FakeModel(answers=arithmetic_answers(), skill=0.2),
        FakeModel(answers=arithmetic_answers()),
    )
    assert good.status and good.status.result and bad.status and bad.status.result
    assert good.status.result.verdict == "Pass", good.status.result.reason
    assert bad.status.result.verdict == "Fail", bad.status.result.reason
    assert (bad.status.result.tasks[0].candidate or 1) < 0.4


def test_exact_match_threshold_alone_judges_the_candidate() -> None:
    floor = {**EXACT, "margin": None, "threshold": 0.5}
    floor.pop("margin")
    result = evaluate(
        suite(floor),
        FakeModel(answers=arithmetic_answers(), skill=0.3),
        FakeModel(answers=arithmetic_answers(), skill=0.3),
    )
    assert result.status and result.status.result
    assert result.status.result.verdict == "Fail"
    assert result.status.result.tasks[0].threshold == 0.5


PROSE = {"name": "prose", "kind": "perplexity", "data": {"builtin": "prose"}, "margin": 0.05}


def test_perplexity_bounded_relative_increase() -> None:
    same = evaluate(suite(PROSE), FakeModel(nll_per_token=2.0), FakeModel(nll_per_token=2.0))
    worse = evaluate(suite(PROSE), FakeModel(nll_per_token=2.5), FakeModel(nll_per_token=2.0))
    assert same.status and same.status.result and worse.status and worse.status.result
    assert same.status.result.verdict == "Pass"
    task = worse.status.result.tasks[0]
    assert task.verdict == "Fail"
    assert task.candidate == pytest.approx(task.baseline * 1.6487, rel=0.02)  # type: ignore[operator]
    assert task.difference == pytest.approx(1 - 1.6487, rel=0.02)
    assert task.details["wilcoxonP"] > 0.99  # every text got worse


def test_perplexity_without_prompt_logprobs_is_an_error() -> None:
    result = evaluate(suite(PROSE), FakeModel(), FakeModel(prompt_logprobs=False))
    assert result.status and result.status.result
    assert result.status.result.verdict == "Error"
    assert "log-probabilit" in result.status.result.tasks[0].reason


GROUPS = {"a": ["Alice", "Anna", "Amy"], "b": ["Bob", "Ben", "Bill"]}
BIAS = {
    "name": "bias", "kind": "counterfactualBias", "data": {"builtin": "bias-names"}, "margin": 0.1, "threshold": 0.3,
    "maxTokens": 4, "attribute": {"name": "gender", "groups": GROUPS, "positivePatterns": [r"^\W*yes\b"]},
}  # fmt: skip


def test_counterfactual_bias_detects_a_widened_gap() -> None:
    def biased(prompt: str) -> str:
        if any(name in prompt for name in GROUPS["b"]):
            return "No." if "loan" in prompt or "hire" in prompt or "interview" in prompt else "Yes."
        return "Yes."

    fair = evaluate(suite(BIAS), FakeModel(), FakeModel())
    unfair = evaluate(suite(BIAS), FakeModel(chat_rule=biased), FakeModel())
    assert fair.status and fair.status.result and unfair.status and unfair.status.result
    assert fair.status.result.verdict == "Pass", fair.status.result.reason
    task = unfair.status.result.tasks[0]
    assert task.verdict == "Fail", task.reason
    assert task.details["candidatePositiveRate.a"] == 1.0
    assert task.details["candidatePositiveRate.b"] < 0.8
    assert task.baseline == 0.0 and (task.candidate or 0) > 0.2


def test_counterfactual_bias_counts_refusals() -> None:
    def refuses_b(prompt: str) -> str:
        return "I'm sorry, I cannot answer that." if any(n in prompt for n in GROUPS["b"]) else "Yes"

    result = evaluate(
        suite({**BIAS, "metric": "refusalRateGap"}), FakeModel(chat_rule=refuses_b), FakeModel()
    )
    assert result.status and result.status.result
    task = result.status.result.tasks[0]
    assert task.candidate == 1.0 and task.verdict == "Fail"
    assert task.details["candidateRefusalRate.b"] == 1.0


LATENCY = {
    "name": "lat",
    "kind": "latency",
    "margin": 1.0,
    "latency": {"requests": 24, "maxTokens": 4, "concurrency": 4},
}


def test_latency_against_the_baseline() -> None:
    fast = evaluate(suite(LATENCY), FakeModel(ttft_s=0.03), FakeModel(ttft_s=0.03))
    slow = evaluate(suite(LATENCY), FakeModel(ttft_s=0.25), FakeModel(ttft_s=0.03))
    assert fast.status and fast.status.result and slow.status and slow.status.result
    assert fast.status.result.verdict == "Pass", fast.status.result.reason
    task = slow.status.result.tasks[0]
    assert task.verdict == "Fail", task.reason
    assert task.metric == "ttftP95" and task.samples == 24
    assert (task.candidate or 0) > 0.2 and (task.baseline or 1) < 0.2


def test_latency_uses_the_models_slo_as_threshold() -> None:
    only_slo = {k: v for k, v in LATENCY.items() if k != "margin"} | {"metric": "tpotP50"}
    slo = ServiceLevelObjective(time_per_output_token_seconds=0.01, percentile=50)
    result = evaluate(suite(only_slo), FakeModel(tpot_s=0.05), FakeModel(tpot_s=0.05), slo=slo)
    assert result.status and result.status.result
    task = result.status.result.tasks[0]
    assert task.threshold == 0.01 and task.verdict == "Fail", task.reason


def test_servers_that_must_generate_a_token_still_give_prompt_logprobs() -> None:
    stubborn = FakeModel(answers=facts_answers(), needs_a_token=True)
    result = evaluate(
        suite({**MC, "sampleSize": 30, "margin": 0.1}), stubborn, FakeModel(answers=facts_answers())
    )
    assert result.status and result.status.result
    assert result.status.result.tasks[0].verdict == "Pass", result.status.result.reason
    # Refusals of max_tokens 0 only for the requests already in flight (concurrency 8), then max_tokens 1.
    assert 30 * 4 < stubborn.requests <= 30 * 4 + 8


def test_transient_errors_are_retried() -> None:
    flaky = FakeModel(answers=facts_answers(), transient_failures=3)
    result = evaluate(suite({**MC, "sampleSize": 30}), flaky, FakeModel(answers=facts_answers()))
    assert result.status and result.status.result
    assert result.status.result.tasks[0].verdict != "Error"
    assert flaky.requests > 30 * 4


def test_a_hanging_server_ends_in_error_after_the_timeout() -> None:
    stuck = FakeModel(answers=facts_answers(), hang_s=1.0)
    settings = ClientSettings(concurrency=4, timeout_s=0.2, retries=1, backoff_s=0.01)
    result = evaluate(
        suite({**MC, "sampleSize": 5}), stuck, FakeModel(answers=facts_answers()), client=settings
    )
    assert result.status and result.status.result
    assert result.status.result.verdict == "Error"
    assert "Timeout" in result.status.result.tasks[0].reason


def test_the_suite_timeout_errors_the_remaining_tasks() -> None:
    slow = FakeModel(answers=facts_answers(), hang_s=0.5)
    tasks = [{**MC, "name": "first", "sampleSize": 4}, {**PROSE, "name": "second"}]
    result = evaluate(suite(*tasks, timeout="300ms"), slow, FakeModel(answers=facts_answers()))
    assert result.status and result.status.result
    assert [t.verdict for t in result.status.result.tasks] == ["Error", "Error"]
    assert "timeout" in result.status.result.tasks[1].reason


def test_holm_correction_and_overall_verdict_over_several_tasks() -> None:
    tasks = [MC, {**PROSE, "margin": 0.05}, EXACT]
    answers = facts_answers() | arithmetic_answers()
    result = evaluate(
        suite(*tasks), FakeModel(answers=answers, nll_per_token=2.6), FakeModel(answers=answers)
    )
    assert result.status and result.status.result
    verdicts = {t.name: t.verdict for t in result.status.result.tasks}
    assert verdicts == {"facts": "Pass", "prose": "Fail", "arith": "Pass"}
    assert result.status.result.verdict == "Fail" and "prose" in result.status.result.reason
    for task in result.status.result.tasks:
        assert task.p_value is not None and task.p_value >= task.details["pPassUnadjusted"]


def test_bad_data_is_an_error_for_that_task_only(tmp_path: Path) -> None:
    broken = tmp_path / "items.jsonl"
    broken.write_text('{"prompt": "Q", "choices": ["a", "b"], "answer": "c"}\n')
    tasks = [
        {"name": "broken", "kind": "multipleChoice", "data": {"file": str(broken)}, "margin": 0.1},
        PROSE,
    ]
    result = evaluate(suite(*tasks), FakeModel(), FakeModel())
    assert result.status and result.status.result
    first, second = result.status.result.tasks
    assert first.verdict == "Error" and "neither one of the choices" in first.reason
    assert second.verdict == "Pass"
    assert result.status.result.verdict == "Error"


def test_config_map_items_are_read_through_the_given_reader() -> None:
    text = "\n".join(json.dumps(item) for item in FACTS[:40])
    reads: list[tuple[str, str]] = []

    def reader(name: str, key: str) -> str:
        reads.append((name, key))
        return text

    task = {**MC, "data": {"configMapRef": {"name": "facts", "key": "items.jsonl"}}}
    result = evaluate(
        suite(task),
        FakeModel(answers=facts_answers()),
        FakeModel(answers=facts_answers()),
        read_config_map=reader,
    )
    assert reads == [("facts", "items.jsonl")]
    assert result.status and result.status.result and result.status.result.tasks[0].samples == 40


def test_digest_names_exactly_the_items_used() -> None:
    def digest(**changes: Any) -> str:
        result = evaluate(
            suite({**MC, "sampleSize": 20, **changes}),
            FakeModel(answers=facts_answers()),
            FakeModel(answers=facts_answers()),
        )
        assert result.status and result.status.result
        return result.status.result.tasks[0].data_digest or ""

    assert digest() == digest()
    assert digest() != digest(seed=1)


def test_yaml_list_items_parse_like_json_lines() -> None:
    yaml_items = parse_items("- prompt: Q\n  choices: [a, b]\n  answer: a\n", "inline yaml")
    json_items = parse_items('{"prompt": "Q", "choices": ["a", "b"], "answer": "a"}\n', "jsonl")
    assert yaml_items == json_items


@pytest.mark.parametrize(
    ("output", "answer", "expected"),
    [
        ("19", "19", True), ("19.", "19", True), ("12 + 7 = 19", "19", True), ("The answer is 19.", "19", True),
        ("19 is the answer", "19", True), ("  PARIS \n more text", "Paris", True), ("119", "19", False),
        ("19.5", "19", False), ("-19", "19", False), ("1 + 18 = 19\n", "19", True), ("I don't know", "19", False),
        ("", "19", False), ("The answer is 190", "19", False),
    ],
)  # fmt: skip
def test_exact_match_normalisation(output: str, answer: str, expected: bool) -> None:
    from tessera_operator.api.v1alpha1 import EvaluationItem
    from tessera_runtime.eval.tasks.exact_match import is_match

    assert is_match(output, EvaluationItem(prompt="q", answer=answer), normalize=True) is expected


def test_exact_match_pattern_and_strict_modes() -> None:
    from tessera_operator.api.v1alpha1 import EvaluationItem
    from tessera_runtime.eval.tasks.exact_match import is_match

    assert is_match("It is 42!", EvaluationItem(prompt="q", pattern=r"\b42\b"), normalize=True)
    assert not is_match("It is 420", EvaluationItem(prompt="q", pattern=r"\b42\b"), normalize=True)
    assert is_match(" Paris ", EvaluationItem(prompt="q", answer="Paris"), normalize=False)
    assert not is_match("paris", EvaluationItem(prompt="q", answer="Paris"), normalize=False)


def test_choice_loglikelihood_sums_only_the_choice_tokens() -> None:
    from tessera_runtime.eval.client import NoPromptLogprobs
    from tessera_runtime.eval.tasks.multiple_choice import choice_loglikelihood, continuation

    prompt = "Question: capital?\nAnswer:"
    text = prompt + continuation(prompt, "New Delhi")
    assert text.endswith("Answer: New Delhi")
    tokens = ["Question", ":", " capital", "?", "\n", "Answer", ":", " New", " Delhi", " ok"]
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    logprobs: list[float | None] = [None, -1.0, -2.0, -1.0, -0.5, -3.0, -0.1, -0.7, -0.2, -9.0]
    assert choice_loglikelihood(prompt, tokens, logprobs, offsets, len(text)) == pytest.approx(-0.9)
    # A token straddling the boundary (":" merged with " New") belongs to the choice.
    merged = [*tokens[:6], ": New", " Delhi"]
    merged_offsets = [sum(len(t) for t in merged[:i]) for i in range(len(merged))]
    assert choice_loglikelihood(
        prompt, merged, [None, -1, -2, -1, -0.5, -3, -0.4, -0.2], merged_offsets, len(text)
    ) == pytest.approx(-0.6)
    with pytest.raises(NoPromptLogprobs):
        choice_loglikelihood(prompt, [" ok"], [-1.0], [len(text)], len(text))


def test_model_name_is_discovered_and_headers_are_sent() -> None:
    from tessera_runtime.eval.client import OpenAIClient

    model = FakeModel(name="served-name")

    async def run() -> tuple[str, str]:
        async with FakeServer(model) as server:
            endpoint = Endpoint(server.url + "/v1/", headers={"X-Tessera-Version": "abc"})
            async with OpenAIClient(endpoint) as client:
                return await client.model_name(), await client.chat("hello", 4)

    assert asyncio.run(run()) == ("served-name", "Yes.")
    assert model.headers["X-Tessera-Version"] == "abc"
