"""`tessera plan`: size and shard a model onto GPUs (or a CPU node) and explain the choice.

Exit status: 0 when a feasible plan exists, 1 when none does (the explanation says why and what fits
instead), 2 on bad input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from tessera_operator.planner import (
    Architecture,
    ArchitectureError,
    CandidatePlan,
    CatalogueError,
    PlanRequestError,
    PlanResult,
    Slo,
    cpu_sizing,
    known_config,
    known_config_names,
    load_catalogue,
    plan,
)
from tessera_operator.planner.catalogue import GIB
from tessera_operator.planner.spec import architecture_from_model, request_from_model, wants_cpu

EXIT_INFEASIBLE = 1
EXIT_BAD_INPUT = 2
TABLE_ROWS = 12


class OutputFormat(StrEnum):
    """How `tessera plan` prints its result."""

    table = "table"
    json = "json"
    yaml = "yaml"


class BadInput(Exception):
    """Input the planner cannot work with (exit status 2)."""


def _read_yaml_or_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML or JSON ({exc})") from exc
    if not docs:
        raise BadInput(f"{path} is empty")
    return docs


def _load_config(path: Path) -> tuple[Architecture, str]:
    if not path.exists() and path.stem in known_config_names() and len(path.parts) == 1:
        return Architecture.from_hf_config(known_config(path.stem), name=path.stem), path.stem
    if path.suffix == ".gguf":
        return Architecture.from_gguf(path), path.name
    docs = _read_yaml_or_json(path)
    if not isinstance(docs[0], Mapping):
        raise BadInput(f"{path}: a config.json holds a JSON object")
    return Architecture.from_hf_config(docs[0]), path.name


def _load_manifest(path: Path) -> Mapping[str, Any]:
    """The first document of kind Model in a manifest file."""
    docs = _read_yaml_or_json(path)
    model = next((d for d in docs if isinstance(d, Mapping) and d.get("kind") == "Model"), None)
    if model is None:
        raise BadInput(f"{path}: no document of kind Model")
    return model


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _memory_table(c: CandidatePlan) -> Table:
    b = c.memory.binding
    table = Table(title=f"Per GPU ({c.layout()}{', stage ' + str(b.stage) if len(c.memory.stages) > 1 else ''})",
                  show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("GiB", justify="right")
    table.add_column("how", style="dim")
    table.add_row("budget", _fmt(b.budget / GIB), f"{c.gpu_memory_utilization:g} x visible memory")
    table.add_row("weights", _fmt(b.weights / GIB), f"{c.quantization}, {b.layers} layers")
    table.add_row("peak activation", _fmt(b.activation / GIB),
                  f"max(forward {_fmt(b.forward_peak / GIB)}, sampler {_fmt(b.sampler_peak / GIB)}) + cuBLAS; "
                  f"{c.memory.max_num_batched_tokens:,} tokens, {c.memory.max_num_seqs:,} seqs")
    table.add_row("non-torch", _fmt(b.non_torch / GIB), "CUDA context growth, communication buffers")
    if b.cudagraph:
        table.add_row("CUDA graphs", _fmt(b.cudagraph / GIB), "estimated")
    table.add_row("KV cache", _fmt(b.kv_cache / GIB), f"{b.kv_bytes_per_token:,.0f} bytes/token on this GPU")
    table.add_row("KV tokens / replica", f"{c.kv_cache_tokens:,}",
                  f"{c.max_concurrent_sequences:.2f} x {c.max_model_len:,}-token sequences")
    table.add_row("decode", f"{c.decode_tokens_per_second:,.0f} tok/s",
                  f"batch {c.decode_batch}, {c.time_per_output_token_seconds * 1000:.1f} ms/token")
    table.add_row("prefill", f"{c.prefill_seconds:.3f} s", "one typical prompt")
    per_m = c.cost_per_million_output_tokens
    table.add_row("cost", f"${c.cost_per_hour:.2f}/h", f"${per_m:.3f} per 1M output tokens" if per_m != float("inf")
                  else "")
    table.add_row("load", f"{c.estimated_load_seconds:.0f} s", "weights from the model cache + engine start-up")
    return table


def _candidates_table(result: PlanResult, show_all: bool) -> Table:
    rows = result.candidates if show_all else result.candidates[:TABLE_ROWS]
    table = Table(title=f"Candidates ({len(rows)} of {len(result.candidates)})", title_justify="left")
    for name, justify in (("GPU", "left"), ("TPxPP", "right"), ("quant", "left"), ("weights", "right"),
                          ("act.", "right"), ("KV GiB", "right"), ("KV tokens", "right"), ("seqs", "right"),
                          ("tok/s", "right"), ("$/h", "right"), ("fits", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in rows:
        b = c.memory.binding
        verdict = "[green]yes[/green]" if c.feasible else f"[red]no[/red]: {c.reasons[0]}"
        table.add_row(c.gpu, f"{c.tensor_parallel}x{c.pipeline_parallel}", c.quantization, _fmt(b.weights / GIB),
                      _fmt(b.activation / GIB), _fmt(b.kv_cache / GIB), f"{c.kv_cache_tokens:,}",
                      _fmt(c.max_concurrent_sequences), f"{c.decode_tokens_per_second:,.0f}",
                      f"{c.cost_per_hour:.2f}", verdict)
    return table


def _print_table(console: Console, result: PlanResult, show_all: bool) -> None:
    m = result.model
    console.print(Panel(
        f"{m.get('name') or m.get('modelType')}: {m['parameters'] / 1e9:.2f}B parameters"
        f"{' (' + format(m['activeParameters'] / 1e9, '.2f') + 'B active)' if m.get('experts') else ''}, "
        f"{m['layers']} layers, {m['attentionHeads']} heads / {m['kvHeads']} KV heads x {m['headDim']}"
        f"{', MLA' if m.get('mla') else ''}; weights from {m['weightsSource']}\n"
        f"vLLM {result.assumptions['vllmVersion']} ({result.assumptions['vllmEra']}, "
        f"{result.assumptions['sampler']} sampler), max_model_len {result.assumptions['maxModelLen']:,}",
        title="tessera plan", title_align="left"))
    if result.chosen:
        console.print(_memory_table(result.chosen))
    console.print(_candidates_table(result, show_all))
    style = "green" if result.chosen else "red"
    console.print(Panel(result.explanation, title="chosen" if result.chosen else "no plan fits",
                        border_style=style, title_align="left"))


def _emit(console: Console, data: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False))


def _print_cpu(console: Console, arch: Architecture, max_model_len: int | None, output: OutputFormat) -> None:
    sizing = cpu_sizing(arch, max_model_len)
    data = {"chosen": {"gpu": "cpu", "feasible": True, **sizing.to_dict()}, "candidates": [],
            "explanation": f"CPU placement (transformers engine): request {sizing.memory_request} of memory"}
    if output is OutputFormat.table:
        table = Table(title="CPU placement (transformers engine, float32)", show_header=False, title_justify="left")
        for key, value in sizing.to_dict().items():
            table.add_row(key, str(value))
        console.print(table)
    else:
        _emit(console, data, output)


def plan_command(
    model_config: Path | None = typer.Option(None, "--model-config", help="A Hugging Face config.json (or a .gguf file)."),
    manifest: Path | None = typer.Option(None, "-f", "--file", help="A Model manifest with spec.source.architecture."),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU catalogue name (H100-80GB, A100-80GB, L4...) or cpu."),
    tensor_parallel: int | None = typer.Option(None, "--tensor-parallel", "--tp", min=1),
    pipeline_parallel: int | None = typer.Option(None, "--pipeline-parallel", "--pp", min=1),
    max_model_len: int | None = typer.Option(None, "--max-model-len", min=16),
    gpu_memory_utilization: float | None = typer.Option(None, "--gpu-memory-utilization", min=0.01, max=1.0),
    quantization: str | None = typer.Option(None, "--quantization", help="none, fp8, int8, awq, gptq, mxfp4, a GGUF "
                                            "type, or auto (also consider fp8)."),
    kv_cache_dtype: str | None = typer.Option(None, "--kv-cache-dtype", help="auto, fp8, fp8_e4m3, fp8_e5m2."),
    catalogue: Path | None = typer.Option(None, "--catalogue", help="YAML/JSON overrides of the GPU catalogue."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--output", "-o"),
    vllm_version: str | None = typer.Option(None, "--vllm-version", help="vLLM version to model (default 0.11)."),
    sampler: str | None = typer.Option(None, "--sampler", help="native (PyTorch sort) or flashinfer."),
    max_num_batched_tokens: int | None = typer.Option(None, "--max-num-batched-tokens", min=1),
    max_num_seqs: int | None = typer.Option(None, "--max-num-seqs", min=1),
    ttft: float | None = typer.Option(None, "--ttft", help="p95 time-to-first-token target, seconds."),
    tpot: float | None = typer.Option(None, "--tpot", help="p95 time-per-output-token target, seconds."),
    throughput: float | None = typer.Option(None, "--throughput", help="Output tokens/s to sustain (all replicas)."),
    show_all: bool = typer.Option(False, "--all", help="Show every candidate in the table."),
) -> None:
    """Size and shard a model onto GPUs as vLLM would allocate it, and choose the cheapest plan that fits."""
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        if (model_config is None) == (manifest is None):
            raise BadInput("give exactly one of --model-config PATH or -f MODEL.yaml")
        model: Mapping[str, Any] = {}
        if model_config is not None:
            arch, _ = _load_config(model_config)
        else:
            assert manifest is not None
            model = _load_manifest(manifest)
            arch = architecture_from_model(model)
        slo = Slo(ttft, tpot, throughput) if any(v is not None for v in (ttft, tpot, throughput)) else None
        request = request_from_model(
            model, gpu=gpu, tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
            max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization, quantization=quantization,
            kv_cache_dtype=kv_cache_dtype, slo=slo, vllm_version=vllm_version, sampler=sampler,
            max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs)
        if (request.gpu or "").lower() == "cpu" or (gpu is None and model and wants_cpu(model.get("spec") or {})):
            _print_cpu(console, arch, request.max_model_len, output)
            return
        if quantization == "none" and arch.quantization is not None:
            raise BadInput(f"the checkpoint is quantized ({arch.quantization.method}); it cannot be served unquantized")
        result = plan(arch, request, load_catalogue(catalogue) if catalogue else None)
    except (BadInput, ArchitectureError, PlanRequestError, CatalogueError, ValueError, TypeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    if output is OutputFormat.table:
        _print_table(console, result, show_all)
    else:
        _emit(console, result.to_dict(), output)
    if result.chosen is None:
        raise typer.Exit(EXIT_INFEASIBLE)


def register(app: typer.Typer) -> None:
    """Add `tessera plan` to the CLI."""
    app.command("plan")(plan_command)
