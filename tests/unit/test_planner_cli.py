"""`tessera plan`: output shapes and exit codes (0 feasible, 1 nothing fits, 2 bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tessera_operator.commands import plan as plan_command
from tessera_operator.planner import known_config_path

REQUIRED_KEYS = {"gpu", "tensorParallel", "pipelineParallel", "gpusPerReplica", "weightsGiBPerRank",
                 "activationGiBPerRank", "kvCacheGiBPerRank", "kvCacheTokens", "maxConcurrentSequences",
                 "costPerHour", "feasible", "reasons", "nodesPerReplica", "maxModelLen", "quantization",
                 "kvCacheDtype", "decodeTokensPerSecond", "prefillSeconds", "costPerMillionOutputTokens",
                 "estimatedLoadSeconds"}


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()

    @application.callback()
    def _root() -> None:
        """Test root."""

    plan_command.register(application)
    return application


def run(app: typer.Typer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["plan", *args])
    return result.exit_code, result.output


CONFIG_8B = str(known_config_path("llama-3.1-8b"))
CONFIG_70B = str(known_config_path("llama-3.1-70b"))


def test_reference_case_json(app: typer.Typer) -> None:
    code, out = run(app, "--model-config", CONFIG_8B, "--gpu", "H100-80GB", "--tensor-parallel", "1",
                    "--gpu-memory-utilization", "0.9", "--max-model-len", "16384", "--output", "json")
    assert code == 0, out
    data = json.loads(out)
    assert set(data) >= {"chosen", "candidates", "explanation"}
    chosen = data["chosen"]
    assert set(chosen) >= REQUIRED_KEYS
    assert chosen["kvCacheGiBPerRank"] == pytest.approx(51.38, rel=0.03)
    assert (chosen["gpu"], chosen["tensorParallel"], chosen["gpusPerReplica"]) == ("H100-80GB", 1, 1)
    assert all(set(c) >= REQUIRED_KEYS for c in data["candidates"])


def test_70b_on_two_a100s_is_infeasible_with_alternatives(app: typer.Typer) -> None:
    code, out = run(app, "--model-config", CONFIG_70B, "--gpu", "A100-80GB", "--tensor-parallel", "2", "-o", "json")
    assert code == 1, out
    data = json.loads(out)
    assert data["chosen"] is None
    assert all(not c["feasible"] for c in data["candidates"])
    only = data["candidates"][0]
    assert only["kvCacheGiBPerRank"] < 0.1 * only["budgetGiBPerRank"]  # almost nothing left for the KV cache
    assert "What fits instead" in data["explanation"] and data["alternatives"]
    assert all(a["feasible"] for a in data["alternatives"])
    assert any(a["gpu"] == "A100-80GB" and a["tensorParallel"] == 4 for a in data["alternatives"])


def test_70b_on_two_a100s_with_short_context_fits_but_warns(app: typer.Typer) -> None:
    code, out = run(app, "--model-config", CONFIG_70B, "--gpu", "A100-80GB", "--tensor-parallel", "2",
                    "--max-model-len", "8192", "-o", "json")
    assert code == 0, out
    data = json.loads(out)
    assert any("almost no KV cache" in n for n in data["chosen"]["notes"])
    assert "For more KV cache" in data["explanation"]


def test_table_and_yaml_outputs(app: typer.Typer) -> None:
    code, out = run(app, "--model-config", CONFIG_8B, "--gpu", "L40S", "--max-model-len", "8192")
    assert code == 0, out
    assert "KV cache" in out and "L40S" in out and "Candidates" in out
    code, out = run(app, "--model-config", CONFIG_8B, "--gpu", "L40S", "--max-model-len", "8192", "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["chosen"]["gpu"] == "L40S"


def test_manifest_input_in_camel_case_uses_placement(app: typer.Typer, tmp_path: Path) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "tessera.dev/v1alpha1", "kind": "Model", "metadata": {"name": "llama"},
        "spec": {"source": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "architecture": {
            "modelType": "llama", "hiddenSize": 4096, "numHiddenLayers": 32, "numAttentionHeads": 32,
            "numKeyValueHeads": 8, "intermediateSize": 14336, "vocabSize": 128256, "maxPositionEmbeddings": 131072}},
                 "placement": {"accelerators": ["H100-80GB"], "maxModelLen": 16384, "gpuMemoryUtilization": 0.9}},
    }))
    code, out = run(app, "-f", str(manifest), "-o", "json")
    assert code == 0, out
    chosen = json.loads(out)["chosen"]
    assert chosen["gpu"] == "H100-80GB" and chosen["maxModelLen"] == 16384
    assert chosen["kvCacheGiBPerRank"] == pytest.approx(51.38, rel=0.03)


def test_cpu_placement_sizes_memory(app: typer.Typer) -> None:
    code, out = run(app, "--model-config", str(known_config_path("smollm2-135m")), "--gpu", "cpu",
                    "--max-model-len", "2048", "-o", "json")
    assert code == 0, out
    assert json.loads(out)["chosen"]["memoryRequest"].endswith("Mi")


def test_catalogue_override_changes_cost(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "cat.json"
    path.write_text(json.dumps({"H100-80GB": {"pricePerHour": 1.0}}))
    code, out = run(app, "--model-config", CONFIG_8B, "--gpu", "H100-80GB", "--tensor-parallel", "1",
                    "--catalogue", str(path), "-o", "json")
    assert code == 0, out
    assert json.loads(out)["chosen"]["costPerHour"] == 1.0


@pytest.mark.parametrize("args", [
    (),  # neither input
    ("--model-config", "missing.json"),
    ("--model-config", CONFIG_8B, "--gpu", "Voodoo2"),
    ("--model-config", CONFIG_8B, "--tensor-parallel", "0"),
    ("--model-config", CONFIG_8B, "--gpu-memory-utilization", "1.5"),
    ("--model-config", CONFIG_8B, "--max-model-len", "1000000"),
    ("--model-config", CONFIG_8B, "--quantization", "int3"),
    ("--model-config", CONFIG_8B, "--kv-cache-dtype", "fp4"),
    ("--model-config", CONFIG_8B, "--vllm-version", "latest"),
    ("--model-config", CONFIG_8B, "--output", "xml"),
])
def test_bad_input_exits_2(app: typer.Typer, args: tuple[str, ...]) -> None:
    code, _ = run(app, *args)
    assert code == 2


def test_bad_files_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    assert run(app, "--model-config", str(broken))[0] == 2
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    assert run(app, "--model-config", str(incomplete))[0] == 2
    no_arch = tmp_path / "model.yaml"
    no_arch.write_text("kind: Model\nspec:\n  source:\n    uri: hf://a/b\n")
    assert run(app, "-f", str(no_arch))[0] == 2
    assert run(app, "--model-config", str(incomplete), "-f", str(no_arch))[0] == 2
