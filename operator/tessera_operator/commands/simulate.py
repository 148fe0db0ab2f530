"""`tessera simulate`: replay a request trace through a simulated fleet scaled by one policy.

The trace is a CSV in the Azure LLM inference trace format (`TIMESTAMP,ContextTokens,GeneratedTokens`)
or `synthetic:SHAPE[:SEED]`. Exit status: 0 on success, 2 on bad input.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

EXIT_BAD_INPUT = 2
console = Console(stderr=True)


class OutputFormat(StrEnum):
    """How the figures are printed."""

    json = "json"
    table = "table"


def register(app: typer.Typer) -> None:
    """Add `tessera simulate` to the `tessera` CLI."""
    app.command("simulate")(simulate)


def simulate(
    trace: Annotated[str, typer.Option("--trace", help="Trace CSV (Azure format) or synthetic:SHAPE[:SEED].")],
    policy: Annotated[
        str,
        typer.Option(
            "--policy", help="tessera, kubeai, knative, hpa, aibrix, llmd, static or oracle."
        ),
    ] = "tessera",
    rate_scale: Annotated[
        int, typer.Option("--rate-scale", min=1, help="Each request becomes K, jittered by up to +-1 s.")
    ] = 1,
    profile: Annotated[
        str, typer.Option("--profile", help="Built-in profile name or a JSON/YAML profile file.")
    ] = "llama-3.1-8b-h100",
    target: Annotated[
        float | None,
        typer.Option("--target", help="The policy's setting (its target); default: its published default."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the rate-scale jitter.")] = 0,
    output: Annotated[OutputFormat, typer.Option("--output", help="json or table.")] = OutputFormat.table,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write replicas over time against load (PNG).")] = None,
) -> None:
    """Simulate a policy on a trace and print GPU-hours, SLO attainment, TTFT percentiles and changes."""
    from tessera_operator.simulator.policies import POLICIES
    from tessera_operator.simulator.profile import load_profile
    from tessera_operator.simulator.run import run_policy
    from tessera_operator.simulator.trace import attribution_for, load_trace, scale_rate

    if policy not in POLICIES:
        console.print(f"[red]unknown policy {policy!r}[/red]; known: {', '.join(POLICIES)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        replica_profile = load_profile(profile)
        requests = scale_rate(load_trace(trace), rate_scale, seed=seed)
    except (OSError, ValueError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(EXIT_BAD_INPUT) from error
    spec = POLICIES[policy]
    setting = spec.default_setting if target is None else target
    with Progress(
        TextColumn(f"simulating {policy} on {len(requests):,} requests"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("simulate", total=1.0)
        result = run_policy(
            spec, setting, requests, replica_profile, progress=lambda done: progress.update(task, completed=done)
        )
    attribution = attribution_for(trace)
    document: dict[str, Any] = {
        "policy": policy,
        "setting": {"name": spec.setting_name, "value": setting},
        "trace": {"source": trace, "rateScale": rate_scale, "requests": len(requests)},
        "profile": replica_profile.name,
        **result.figures(),
    }
    if attribution:
        document["trace"]["attribution"] = attribution
    if plot is not None:
        from tessera_operator.simulator.plot import plot_timelines

        plot_timelines([(policy, result)], plot, f"{policy} on {requests.name}", attribution)
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    table = Table(title=f"{policy} ({spec.setting_name} = {setting:g}) on {requests.name}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.figures().items():
        table.add_row(key, f"{value:g}" if isinstance(value, float) else str(value))
    Console().print(table)
    if attribution:
        Console().print(f"[dim]{attribution}[/dim]")
