"""Turn a resolved plan into vLLM's command line (pure), and exec it.

The command is `vllm serve MODEL ...` (vLLM's current entry point). A replica that spans several
nodes runs as a LeaderWorkerSet; vLLM's native multi-node mode is used (no Ray cluster to manage):
every node runs `vllm serve` with `--nnodes`, `--node-rank` and `--master-addr` (the leader), and
non-leader nodes add `--headless` (they run workers only, no API server). The LeaderWorkerSet
controller provides the leader address, this pod's index and the group size as environment
variables.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MASTER_PORT = 29500

# vLLM's short aliases for flags Tessera sets; user flags are normalised through this before comparing.
_ALIASES = {"-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size", "-q": "--quantization"}


class LaunchError(ValueError):
    """The plan or the extra arguments cannot make a valid vLLM command line."""


@dataclass(frozen=True)
class VllmPlan:
    """What Tessera decides about a vLLM replica (from the planner's chosen plan and the Model)."""

    model: str
    served_model_name: str | None = None
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    host: str | None = None
    port: int = 8000


@dataclass(frozen=True)
class MultiNode:
    """This pod's place in a multi-node replica."""

    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int = DEFAULT_MASTER_PORT


def _pick(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data and data[key] is not None:
            return data[key]
    return None


def unwrap_plan(data: Mapping[str, Any]) -> dict[str, Any]:
    """A flat plan: the output of `tessera plan --output json` has the plan under `chosen`."""
    if "chosen" not in data:
        return dict(data)
    chosen = data["chosen"]
    if not isinstance(chosen, Mapping):
        raise LaunchError("the plan has no chosen candidate (the planner found nothing feasible)")
    return {**{k: v for k, v in data.items() if k not in ("chosen", "candidates")}, **chosen}


def plan_from_json(data: Mapping[str, Any], model: str | None = None) -> VllmPlan:
    """Read a plan (camelCase, as `tessera plan --output json` writes it; a `chosen` wrapper is unwrapped)."""
    data = unwrap_plan(data)
    model_ref = model or _pick(data, "model", "modelPath")
    if not isinstance(model_ref, str) or not model_ref:
        raise LaunchError("no model: pass --model or put `model` in the plan")

    def as_int(*keys: str, default: int | None = None) -> int | None:
        value = _pick(data, *keys)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LaunchError(f"plan field {keys[0]} must be a positive integer, got {value!r}")
        return value

    utilization = _pick(data, "gpuMemoryUtilization", "gpu_memory_utilization")
    if utilization is not None and not (isinstance(utilization, int | float) and 0 < utilization <= 1):
        raise LaunchError(f"plan field gpuMemoryUtilization must be in (0, 1], got {utilization!r}")
    return VllmPlan(
        model=model_ref,
        served_model_name=_pick(data, "servedModelName", "served_model_name"),
        tensor_parallel=as_int("tensorParallel", "tensor_parallel", default=1) or 1,
        pipeline_parallel=as_int("pipelineParallel", "pipeline_parallel", default=1) or 1,
        max_model_len=as_int("maxModelLen", "max_model_len"),
        gpu_memory_utilization=float(utilization) if utilization is not None else None,
        quantization=_pick(data, "quantization"),
        kv_cache_dtype=_pick(data, "kvCacheDtype", "kv_cache_dtype"),
        host=_pick(data, "host"),
        port=as_int("port", default=8000) or 8000,
    )


def multinode_from_env(env: Mapping[str, str], master_port: int = DEFAULT_MASTER_PORT) -> MultiNode | None:
    """The LeaderWorkerSet placement from LWS_LEADER_ADDRESS, LWS_WORKER_INDEX and LWS_GROUP_SIZE, if any."""
    size_text = env.get("LWS_GROUP_SIZE")
    if not size_text:
        return None
    try:
        size = int(size_text)
        rank = int(env.get("LWS_WORKER_INDEX", "0"))
    except ValueError as exc:
        raise LaunchError(f"bad LeaderWorkerSet environment: {exc}") from exc
    if size <= 1:
        return None
    leader = env.get("LWS_LEADER_ADDRESS")
    if not leader:
        raise LaunchError("LWS_GROUP_SIZE > 1 but LWS_LEADER_ADDRESS is not set")
    return MultiNode(nnodes=size, node_rank=rank, master_addr=leader, master_port=master_port)


def _flag_name(arg: str) -> str | None:
    """The canonical long name of a flag argument (`--max_model_len=4` → `--max-model-len`), or None."""
    if not arg.startswith("-") or arg == "-" or _is_number(arg):
        return None
    name = arg.split("=", 1)[0]
    name = _ALIASES.get(name, name)
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    return name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def build_vllm_argv(
    plan: VllmPlan,
    *,
    multinode: MultiNode | None = None,
    extra_args: Sequence[str] = (),
    executable: str = "vllm",
) -> list[str]:
    """vLLM's command line for `plan` on this pod; extra args pass through unless they override Tessera's."""
    if multinode is not None:
        world = plan.tensor_parallel * plan.pipeline_parallel
        if world % multinode.nnodes:
            raise LaunchError(
                f"tensor parallel {plan.tensor_parallel} x pipeline parallel {plan.pipeline_parallel} = {world} "
                f"GPUs cannot be split evenly over {multinode.nnodes} nodes"
            )
        if not 0 <= multinode.node_rank < multinode.nnodes:
            raise LaunchError(f"node rank {multinode.node_rank} is outside a group of {multinode.nnodes}")
    argv = [executable, "serve", plan.model]
    options: list[tuple[str, str | None]] = [
        ("--served-model-name", plan.served_model_name),
        ("--tensor-parallel-size", str(plan.tensor_parallel)),
        ("--pipeline-parallel-size", str(plan.pipeline_parallel)),
        ("--max-model-len", None if plan.max_model_len is None else str(plan.max_model_len)),
        (
            "--gpu-memory-utilization",
            None if plan.gpu_memory_utilization is None else f"{plan.gpu_memory_utilization:g}",
        ),
        ("--quantization", plan.quantization),
        ("--kv-cache-dtype", plan.kv_cache_dtype),
        ("--host", plan.host),
        ("--port", str(plan.port)),
    ]
    if multinode is not None:
        options += [
            ("--distributed-executor-backend", "mp"),
            ("--nnodes", str(multinode.nnodes)),
            ("--node-rank", str(multinode.node_rank)),
            ("--master-addr", multinode.master_addr),
            ("--master-port", str(multinode.master_port)),
        ]
    owned: set[str] = {"--model"}
    for flag, value in options:
        if value is not None:
            argv += [flag, value]
            owned.add(flag)
    if multinode is not None:
        owned.add("--headless")
        if multinode.node_rank > 0:
            argv.append("--headless")
    conflicts = sorted({name for arg in extra_args if (name := _flag_name(arg)) in owned})
    if conflicts:
        raise LaunchError(
            f"extra vLLM arguments {', '.join(conflicts)} conflict with settings Tessera derives from the plan; "
            "change them in the Model spec (placement, maxModelLen, quantization, ...) instead of engine args"
        )
    return argv + list(extra_args)


def load_plan_argument(value: str) -> dict[str, Any]:
    """`--plan-json` accepts inline JSON or `@path` to a JSON file."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LaunchError(f"--plan-json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LaunchError("--plan-json must be a JSON object")
    return data


def exec_vllm(argv: list[str]) -> None:
    """Replace this process with vLLM (signals then reach vLLM directly). Never returns."""
    program = shutil.which(argv[0])
    if program is None:
        raise LaunchError(f"`{argv[0]}` is not on PATH: this image has no vLLM (install the `vllm` extra)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(program, argv)
