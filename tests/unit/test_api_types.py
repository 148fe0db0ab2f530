"""Round trips of every API type, and generated specs that the types and the schema agree on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera_operator.api.v1alpha1 import (
    EvaluationSuite,
    Model,
    ModelEvaluation,
    ModelEvaluationResult,
    ModelEvaluationStatus,
    ModelStatus,
    ResolvedPlan,
    TaskResult,
)
from tessera_operator.validation import validate_manifest

ROOT = Path(__file__).resolve().parents[2]
KINDS: dict[str, Any] = {"Model": Model, "EvaluationSuite": EvaluationSuite, "ModelEvaluation": ModelEvaluation}


def test_examples_round_trip_through_the_types() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            typed = KINDS[document["kind"]].model_validate(document)
            again = KINDS[document["kind"]].model_validate(typed.to_api())
            assert again == typed
            assert validate_manifest(typed.to_api()) == [], path


def test_status_round_trip() -> None:
    status = ModelStatus(
        observed_generation=3,
        plan=ResolvedPlan(accelerator="H100-80GB", gpus_per_replica=1, kv_cache_tokens=420_000),
        replicas=2,
        ready_replicas=1,
        selector="tessera.dev/model=m",
    )
    wire = status.to_api()
    assert wire["plan"]["kvCacheTokens"] == 420_000 and wire["readyReplicas"] == 1
    assert ModelStatus.model_validate(wire) == status


def test_model_evaluation_round_trip() -> None:
    evaluation = ModelEvaluation.model_validate({
        "metadata": {"name": "m-abc-def"},
        "spec": {
            "model": "m",
            "candidate": {"version": "abc"},
            "baseline": {"version": "def"},
            "suite": {"name": "s", "digest": "sha256:00"},
        },
    })
    evaluation.status = ModelEvaluationStatus(result=ModelEvaluationResult(
        verdict="Pass", reason="all tasks non-inferior",
        tasks=[TaskResult(name="facts", kind="multipleChoice", metric="accuracy", verdict="Pass", p_value=0.01)],
    ))
    wire = evaluation.to_api()
    assert wire["status"]["result"]["tasks"][0]["pValue"] == 0.01
    assert validate_manifest(wire) == []
    assert ModelEvaluation.model_validate(wire) == evaluation


names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
replica_bounds = st.tuples(st.integers(0, 20), st.integers(1, 20))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=names,
    bounds=replica_bounds,
    tp=st.one_of(st.none(), st.integers(-2, 16)),
    engine=st.sampled_from(["vllm", "transformers"]),
    accelerators=st.lists(st.sampled_from(["H100-80GB", "A100-80GB", "L4", "cpu"]), max_size=2, unique=True),
)
def test_generated_models_types_and_schema_agree(
    name: str, bounds: tuple[int, int], tp: int | None, engine: str, accelerators: list[str]
) -> None:
    spec: dict[str, Any] = {
        "source": {"uri": f"hf://org/{name}"},
        "engine": {"name": engine},
        "placement": {"accelerators": accelerators},
        "autoscaling": {"minReplicas": bounds[0], "maxReplicas": bounds[1]},
    }
    if tp is not None:
        spec["placement"]["tensorParallel"] = tp
    manifest = {"apiVersion": "tessera.dev/v1alpha1", "kind": "Model", "metadata": {"name": name}, "spec": spec}
    errors = {e.path for e in validate_manifest(manifest)}
    expected: set[str] = set()
    if bounds[0] > bounds[1]:
        expected.add("spec.autoscaling.minReplicas")
    if tp is not None and tp < 1:
        expected.add("spec.placement.tensorParallel")
    if "cpu" in accelerators and len(accelerators) > 1:
        expected.add("spec.placement.accelerators")
    if "cpu" in accelerators and tp is not None:
        expected.add("spec.placement.accelerators")
    if "cpu" in accelerators and engine != "transformers":
        expected.add("spec.engine.name")
    assert errors == expected
    if not errors:
        assert Model.model_validate(manifest).spec.autoscaling.max_replicas == bounds[1]
