"""Offline validation applies the same schema and CEL rules as the apiserver."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tessera_operator.cli import app
from tessera_operator.validation import validate_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

BASE_MODEL: dict[str, Any] = {
    "apiVersion": "tessera.dev/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "m"},
    "spec": {"source": {"uri": "hf://org/model"}},
}


def model_with(path: str, value: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(BASE_MODEL)
    node = manifest
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return manifest


def test_examples_exist_and_are_valid() -> None:
    assert len(EXAMPLES) >= 6
    for path in EXAMPLES:
        for document in yaml.safe_load_all(path.read_text()):
            assert validate_manifest(document) == [], path


# (manifest change, field path expected in the error, words expected in the message)
BAD_MODELS = [
    ("spec.autoscaling", {"minReplicas": 3, "maxReplicas": 1}, "spec.autoscaling.minReplicas", "maxReplicas"),
    ("spec.source.uri", "ftp://host/model", "spec.source.uri", "should match"),
    ("spec.source.format", "onnx", "spec.source.format", "supported values"),
    ("spec.engine.name", "tgi", "spec.engine.name", "supported values"),
    ("spec.engine.args", ["--tensor-parallel-size=4"], "spec.engine.args", "derives from the plan"),
    ("spec.engine.args", ["--max-model-len", "8192"], "spec.engine.args", "--max-model-len"),
    ("spec.placement.tensorParallel", 0, "spec.placement.tensorParallel", "greater than or equal to 1"),
    ("spec.placement.pipelineParallel", -2, "spec.placement.pipelineParallel", "greater than or equal to 1"),
    ("spec.placement.gpuMemoryUtilization", 1.5, "spec.placement.gpuMemoryUtilization", "less than or equal"),
    ("spec.placement.accelerators", ["cpu", "H100-80GB"], "spec.placement.accelerators", "cannot be mixed"),
    ("spec.autoscaling.scaleToZeroAfter", "ten minutes", "spec.autoscaling.scaleToZeroAfter", "should match"),
    ("spec.autoscaling.minReplicas", -1, "spec.autoscaling.minReplicas", "greater than or equal to 0"),
    ("spec.autoscaling.policy", "magic", "spec.autoscaling.policy", "supported values"),
    ("spec.replicas", 5, "spec.replicas", "within autoscaling.minReplicas"),
    ("spec.rollout", {"canarySteps": [{"weight": 50}, {"weight": 10}]}, "spec.rollout.canarySteps", "increase"),
    ("spec.rollout", {"canarySteps": [{"weight": 150}]}, "spec.rollout.canarySteps[0].weight", "less than or equal"),
    ("spec.source.credentialsSecretRef", {"name": "Bad_Name", "key": "token"},
     "spec.source.credentialsSecretRef.name", "should match"),
    ("spec.placement.quantizaton", "fp8", "spec.placement.quantizaton", "unknown field"),
    ("spec.source.format", "gguf", "spec.source.file", "names its file"),
    ("spec.engine.image", "Not An Image", "spec.engine.image", "should match"),
    ("spec.engine.image", "\x80\x9a", "spec.engine.image", "should match"),
    ("spec.engine.image", "vllm:", "spec.engine.image", "should match"),
]


@pytest.mark.parametrize(("path", "value", "field", "words"), BAD_MODELS, ids=[f"{b[0]}={b[1]}" for b in BAD_MODELS])
def test_bad_models_are_rejected_naming_the_field(path: str, value: Any, field: str, words: str) -> None:
    errors = validate_manifest(model_with(path, value))
    assert errors, "expected a rejection"
    assert any(e.path == field and words in e.message for e in errors), [str(e) for e in errors]


@pytest.mark.parametrize("image", ["vllm/vllm-openai:v0.11.0", "registry.example:5000/team/vllm",
                                   "python:3.12", "ghcr.io/org/runtime@sha256:" + "0" * 64])
def test_image_references_are_accepted(image: str) -> None:
    assert validate_manifest(model_with("spec.engine.image", image)) == []


def test_cpu_placement_needs_the_transformers_engine() -> None:
    manifest = model_with("spec.placement", {"accelerators": ["cpu"]})
    errors = validate_manifest(manifest)
    assert [e.path for e in errors] == ["spec.engine.name"]
    manifest["spec"]["engine"] = {"name": "transformers"}
    assert validate_manifest(manifest) == []


def test_long_model_names_are_rejected() -> None:
    manifest = copy.deepcopy(BASE_MODEL)
    manifest["metadata"]["name"] = "m" * 41
    errors = validate_manifest(manifest)
    assert len(errors) == 1 and "metadata.name" in errors[0].message


def test_missing_required_fields() -> None:
    errors = validate_manifest({"apiVersion": "tessera.dev/v1alpha1", "kind": "Model", "metadata": {"name": "x"}})
    assert [str(e) for e in errors] == ["spec: Required value"]
    errors = validate_manifest(model_with("spec.source", {}))
    assert [str(e) for e in errors] == ["spec.source.uri: Required value"]


SUITE: dict[str, Any] = {
    "apiVersion": "tessera.dev/v1alpha1",
    "kind": "EvaluationSuite",
    "metadata": {"name": "s"},
    "spec": {"tasks": [{"name": "facts", "kind": "multipleChoice", "data": {"builtin": "facts"}, "margin": 0.05}]},
}


def test_evaluation_suite_rules() -> None:
    assert validate_manifest(SUITE) == []
    bad = copy.deepcopy(SUITE)
    bad["spec"]["tasks"].append(copy.deepcopy(bad["spec"]["tasks"][0]))
    assert any(e.path == "spec.tasks" and "unique" in e.message for e in validate_manifest(bad))
    bad = copy.deepcopy(SUITE)
    bad["spec"]["tasks"][0]["data"] = {"builtin": "facts", "file": "/data/x.jsonl"}
    assert any("exactly one" in e.message for e in validate_manifest(bad))
    bad = copy.deepcopy(SUITE)
    del bad["spec"]["tasks"][0]["margin"]
    assert any(e.path == "spec.tasks[0].margin" for e in validate_manifest(bad))
    bad = copy.deepcopy(SUITE)
    bad["spec"]["tasks"][0]["kind"] = "counterfactualBias"
    assert any(e.path == "spec.tasks[0].attribute" for e in validate_manifest(bad))


def test_cli_validates_examples_and_names_both_fields(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["validate", *map(str, EXAMPLES)])
    assert result.exit_code == 0, result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(model_with("spec.autoscaling", {"minReplicas": 3, "maxReplicas": 1})))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "spec.autoscaling.minReplicas" in result.output and "maxReplicas" in result.output


def test_cli_skips_other_kinds_and_fails_on_unreadable(tmp_path: Path) -> None:
    other = tmp_path / "cm.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["validate", str(other)]).exit_code == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert runner.invoke(app, ["validate", str(broken)]).exit_code == 1
