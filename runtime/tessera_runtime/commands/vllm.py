"""`tessera-runtime vllm`: build vLLM's command line from the plan and exec it."""

from __future__ import annotations

import os
import shlex

import typer

from ..vllm_launcher import (
    DEFAULT_MASTER_PORT,
    LaunchError,
    build_vllm_argv,
    exec_vllm,
    load_plan_argument,
    multinode_from_env,
    plan_from_json,
    unwrap_plan,
)


def vllm_command(
    ctx: typer.Context,
    plan_json: str | None = typer.Option(None, help="The resolved plan: inline JSON or @file."),
    model: str | None = typer.Option(None, help="Model path or name (overrides the plan's)."),
    served_model_name: str | None = typer.Option(None),
    tensor_parallel_size: int | None = typer.Option(None, min=1),
    pipeline_parallel_size: int | None = typer.Option(None, min=1),
    max_model_len: int | None = typer.Option(None, min=1),
    gpu_memory_utilization: float | None = typer.Option(None, min=0.0, max=1.0),
    quantization: str | None = typer.Option(None),
    kv_cache_dtype: str | None = typer.Option(None),
    host: str | None = typer.Option(None),
    port: int | None = typer.Option(None, min=1, max=65535),
    master_port: int = typer.Option(DEFAULT_MASTER_PORT, help="Port of the leader's distributed rendezvous."),
    dry_run: bool = typer.Option(False, help="Print the command instead of running it."),
) -> None:
    """Exec vLLM with flags from the plan; arguments after `--` pass through to vLLM."""
    data = load_plan_argument(plan_json) if plan_json else {}
    overrides = {
        "servedModelName": served_model_name,
        "tensorParallel": tensor_parallel_size,
        "pipelineParallel": pipeline_parallel_size,
        "maxModelLen": max_model_len,
        "gpuMemoryUtilization": gpu_memory_utilization,
        "quantization": quantization,
        "kvCacheDtype": kv_cache_dtype,
        "host": host,
        "port": port,
    }
    try:
        base = unwrap_plan(data)
        merged = {**base, **{k: v for k, v in overrides.items() if v is not None}}
        plan = plan_from_json(merged, model)
        argv = build_vllm_argv(
            plan, multinode=multinode_from_env(os.environ, master_port), extra_args=list(ctx.args)
        )
    except (LaunchError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if dry_run:
        typer.echo(shlex.join(argv))
        return
    try:
        exec_vllm(argv)
    except LaunchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def register(app: typer.Typer) -> None:
    """Add `vllm`."""
    app.command("vllm", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        vllm_command
    )
