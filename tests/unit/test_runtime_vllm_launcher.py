"""The vLLM command line built from a plan (pure), and its contract with vLLM's own argument parser."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tessera_runtime.vllm_launcher import (
    LaunchError,
    MultiNode,
    VllmPlan,
    build_vllm_argv,
    multinode_from_env,
    plan_from_json,
)

PLANNER_OUTPUT = {
    "chosen": {
        "gpu": "H100-80GB",
        "tensorParallel": 4,
        "pipelineParallel": 2,
        "gpusPerReplica": 8,
        "maxModelLen": 16384,
        "gpuMemoryUtilization": 0.9,
        "quantization": "fp8",
        "kvCacheDtype": "fp8",
        "feasible": True,
    },
    "candidates": [],
}


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_single_node_plan_becomes_vllm_serve_flags() -> None:
    plan = plan_from_json({**PLANNER_OUTPUT, "servedModelName": "llama-70b"}, model="/models/llama")
    argv = build_vllm_argv(plan)
    assert argv[:3] == ["vllm", "serve", "/models/llama"]
    assert _value(argv, "--tensor-parallel-size") == "4"
    assert _value(argv, "--pipeline-parallel-size") == "2"
    assert _value(argv, "--max-model-len") == "16384"
    assert _value(argv, "--gpu-memory-utilization") == "0.9"
    assert _value(argv, "--quantization") == "fp8"
    assert _value(argv, "--kv-cache-dtype") == "fp8"
    assert _value(argv, "--served-model-name") == "llama-70b"
    assert _value(argv, "--port") == "8000"
    assert "--nnodes" not in argv and "--headless" not in argv


def test_unset_plan_fields_leave_vllm_defaults() -> None:
    argv = build_vllm_argv(VllmPlan(model="m"))
    for flag in (
        "--max-model-len",
        "--gpu-memory-utilization",
        "--quantization",
        "--kv-cache-dtype",
        "--host",
    ):
        assert flag not in argv


def test_leaderworkerset_leader_and_workers_get_native_multinode_flags() -> None:
    plan = VllmPlan(model="/models/m", tensor_parallel=8, pipeline_parallel=2)
    env = {"LWS_LEADER_ADDRESS": "llama-0.llama", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "0"}
    leader = build_vllm_argv(plan, multinode=multinode_from_env(env))
    assert _value(leader, "--nnodes") == "2"
    assert _value(leader, "--node-rank") == "0"
    assert _value(leader, "--master-addr") == "llama-0.llama"
    assert _value(leader, "--distributed-executor-backend") == "mp"
    assert "--headless" not in leader  # the leader serves the API
    worker = build_vllm_argv(plan, multinode=multinode_from_env({**env, "LWS_WORKER_INDEX": "1"}))
    assert _value(worker, "--node-rank") == "1"
    assert worker[-1] == "--headless"


def test_no_leaderworkerset_means_single_node() -> None:
    assert multinode_from_env({}) is None
    assert multinode_from_env({"LWS_GROUP_SIZE": "1", "LWS_LEADER_ADDRESS": "x"}) is None
    with pytest.raises(LaunchError, match="LWS_LEADER_ADDRESS"):
        multinode_from_env({"LWS_GROUP_SIZE": "2"})


def test_gpus_must_split_evenly_over_nodes() -> None:
    with pytest.raises(LaunchError, match="3 nodes"):
        build_vllm_argv(VllmPlan(model="m", tensor_parallel=4), multinode=MultiNode(3, 0, "leader"))


def test_extra_args_pass_through() -> None:
    argv = build_vllm_argv(
        VllmPlan(model="m"), extra_args=["--enable-prefix-caching", "--max-num-seqs", "64"]
    )
    assert argv[-3:] == ["--enable-prefix-caching", "--max-num-seqs", "64"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--tensor-parallel-size", "2"],
        ["-tp", "2"],
        ["--tensor_parallel_size=2"],
        ["--max-model-len=4096"],
        ["--port", "9000"],
        ["--model", "other"],
    ],
)
def test_extra_args_that_override_the_plan_are_rejected(extra: list[str]) -> None:
    plan = VllmPlan(model="m", max_model_len=8192)
    with pytest.raises(LaunchError, match="conflict with settings Tessera derives"):
        build_vllm_argv(plan, extra_args=extra)


def test_flags_tessera_does_not_set_may_be_given() -> None:
    # No quantization in the plan: the user may choose one through engine args.
    argv = build_vllm_argv(VllmPlan(model="m"), extra_args=["--quantization", "awq"])
    assert _value(argv, "--quantization") == "awq"


def test_bad_plans_are_refused() -> None:
    with pytest.raises(LaunchError, match="no chosen candidate"):
        plan_from_json({"chosen": None, "candidates": []}, model="m")
    with pytest.raises(LaunchError, match="tensorParallel"):
        plan_from_json({"tensorParallel": 0}, model="m")
    with pytest.raises(LaunchError, match="gpuMemoryUtilization"):
        plan_from_json({"gpuMemoryUtilization": 1.5}, model="m")
    with pytest.raises(LaunchError, match="no model"):
        plan_from_json({})


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from tessera_runtime.cli import main; main()", "vllm", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_cli_dry_run_prints_the_command(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLANNER_OUTPUT))
    done = _run_cli(
        "--plan-json", f"@{plan_file}", "--model", "/models/m", "--port", "8080", "--dry-run",
        "--", "--enable-prefix-caching",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert printed.startswith("vllm serve /models/m ")
    assert "--port 8080" in printed and "--tensor-parallel-size 4" in printed
    assert printed.endswith("--enable-prefix-caching")


def test_cli_rejects_a_conflicting_extra_arg_with_a_clear_message() -> None:
    done = _run_cli("--model", "m", "--dry-run", "--", "--port", "1234")
    assert done.returncode == 2
    assert "--port" in done.stderr and "conflict" in done.stderr


def _vllm_parser() -> Any:
    """vLLM's own parser for `vllm serve` (its location moved between releases)."""
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found]
    except ImportError:
        from vllm.utils import FlexibleArgumentParser  # type: ignore[import-not-found]
    from vllm.entrypoints.openai.cli_args import make_arg_parser  # type: ignore[import-not-found]

    return make_arg_parser(FlexibleArgumentParser())


def test_generated_argv_parses_with_vllms_own_parser() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(
            "vLLM is NOT installed in this environment: the contract between build_vllm_argv and vLLM's "
            "argument parser was NOT checked (install the `vllm` extra to run it)"
        )
    parser = _vllm_parser()
    plan = plan_from_json(PLANNER_OUTPUT, model="/models/m")
    for multinode in (None, MultiNode(2, 0, "leader"), MultiNode(2, 1, "leader")):
        argv = build_vllm_argv(plan, multinode=multinode, extra_args=["--enable-prefix-caching"])
        # `vllm serve MODEL ...`: the serve parser takes the model positionally (`model_tag`); older
        # api_server parsers only know --model.
        try:
            args = parser.parse_args(argv[2:])
        except SystemExit:
            args = parser.parse_args(["--model", argv[2], *argv[3:]])
        assert argv[2] in (getattr(args, "model_tag", None), args.model)
        assert args.tensor_parallel_size == 4
        assert args.pipeline_parallel_size == 2
        assert args.max_model_len == 16384
        assert args.quantization == "fp8"
        assert args.kv_cache_dtype == "fp8"
        if multinode is not None:
            assert args.nnodes == 2 and args.node_rank == multinode.node_rank
            assert args.headless is (multinode.node_rank > 0)
