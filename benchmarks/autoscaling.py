"""Autoscaling benchmark: every policy on one trace, each baseline's target swept fairly, against the oracle.

    python benchmarks/autoscaling.py --trace ../shared/traces/azure-llm-2023-conv.csv \\
        --json out/autoscaling.json --plot out/autoscaling.png [--rate-scale 16]

For each policy (tessera, kubeai, knative, hpa, aibrix, llmd, static, oracle) it keeps the setting with the
fewest GPU-hours among those reaching the SLO-attainment goal (or, flagged, the best attainment when none
does). Tessera runs at its default: its target follows from the SLO, it is not tuned per trace. The table
says how much of the room between the oracle (the lower bound) and the cheapest static fleet each policy
leaves. `--trace` also takes `synthetic:SHAPE[:SEED]` (shapes: bursty-chat, bursty-code, diurnal, flat,
spiky); `benchmarks/autoscaling_traces.py` writes those and the shared trace played backwards as CSV files,
to check the policies away from the shared trace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera_operator.simulator.plot import plot_timelines
from tessera_operator.simulator.policies import POLICIES
from tessera_operator.simulator.profile import load_profile
from tessera_operator.simulator.run import run_policy
from tessera_operator.simulator.sweep import SLO_ATTAINMENT_GOAL, SweepOutcome, sweep_policy
from tessera_operator.simulator.trace import Trace, attribution_for, load_trace, scale_rate

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TRACE = "../shared/traces/azure-llm-2023-conv.csv"  # relative to the repository's root
ORDER = ("tessera", "kubeai", "knative", "hpa", "aibrix", "llmd", "static", "oracle")
CHANGES_PER_HOUR_TARGET = 6.0
ORACLE_MARGIN = 0.10

_loaded: dict[tuple[str, int, int], Trace] = {}


def _trace(source: str, rate_scale: int, seed: int) -> Trace:
    key = (source, rate_scale, seed)
    if key not in _loaded:  # once per worker process
        _loaded[key] = scale_rate(load_trace(source), rate_scale, seed=seed)
    return _loaded[key]


def _sweep(name: str, source: str, rate_scale: int, seed: int, profile_name: str) -> SweepOutcome:
    trace = _trace(source, rate_scale, seed)
    profile = load_profile(profile_name)
    spec = POLICIES[name]
    return sweep_policy(spec, lambda value: run_policy(spec, value, trace, profile))


def _resolve(source: str) -> str:
    if source.startswith("synthetic:") or Path(source).is_absolute():
        return source
    return str((REPO / source).resolve()) if (REPO / source).exists() else source


def run(args: argparse.Namespace) -> dict[str, SweepOutcome]:
    """Sweep every policy, in parallel worker processes."""
    source = _resolve(args.trace)
    outcomes: dict[str, SweepOutcome] = {}
    console = Console(stderr=True)
    with (
        ProcessPoolExecutor(max_workers=args.workers) as pool,
        Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("sweeping policies", total=len(args.policies))
        futures = {
            pool.submit(_sweep, name, source, args.rate_scale, args.seed, args.profile): name
            for name in args.policies
        }
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            progress.update(task, advance=1, description=f"done: {futures[future]}")
    return {name: outcomes[name] for name in args.policies}


def _share_left(gpu_hours: float, oracle: float | None, static: float | None) -> float | None:
    if oracle is None or static is None or static <= oracle:
        return None
    return (gpu_hours - oracle) / (static - oracle)


def report(outcomes: dict[str, SweepOutcome]) -> dict[str, Any]:
    """The JSON document: one object per policy with its figures, setting and the settings tried."""
    oracle = outcomes["oracle"].result.gpu_hours if "oracle" in outcomes else None
    static = outcomes.get("static")
    static_hours = static.result.gpu_hours if static is not None and static.reached_goal else None
    document: dict[str, Any] = {}
    for name, outcome in outcomes.items():
        hours = outcome.result.gpu_hours
        share = _share_left(hours, oracle, static_hours)
        document[name] = {
            **outcome.result.figures(),
            "setting": {"name": outcome.setting_name, "value": outcome.setting},
            "reachedSloGoal": outcome.reached_goal,
            "gpuHoursOverOracle": None if oracle is None else round(hours / oracle - 1, 4),
            "roomLeftToOracle": None if share is None else round(share, 4),
            "tried": [
                {
                    "value": value,
                    "gpuHours": round(result.gpu_hours, 4),
                    "sloAttainment": round(result.slo_attainment, 5),
                    "replicaChangesPerHour": round(result.replica_changes_per_hour, 2),
                }
                for value, result in sorted(outcome.tried.items())
            ],
        }
    return document


def print_table(document: dict[str, Any], title: str, attribution: str) -> None:
    """The table of figures, the gap to the oracle and the verdict on Tessera's targets."""
    table = Table(title=title)
    for column in ("policy", "setting", "GPU-h", "SLO", "TTFT p50/p95/p99 s", "changes/h", "rejected",
                   "vs oracle", "room left"):
        table.add_column(column, justify="left" if column in ("policy", "setting") else "right")
    for name, row in document.items():
        flag = "" if row["reachedSloGoal"] else " (goal missed)"
        over = row["gpuHoursOverOracle"]
        room = row["roomLeftToOracle"]
        table.add_row(
            name + flag,
            f"{row['setting']['name']}={row['setting']['value']:g}",
            f"{row['gpuHours']:.2f}",
            f"{row['sloAttainment']:.2%}",
            f"{row['ttftP50Seconds']:.2f}/{row['ttftP95Seconds']:.2f}/{row['ttftP99Seconds']:.2f}",
            f"{row['replicaChangesPerHour']:.1f}",
            str(row["rejectedRequests"]),
            "-" if over is None else f"{over:+.1%}",
            "-" if room is None else f"{room:.0%}",
        )
    console = Console(width=max(150, Console().width))
    console.print(table)
    console.print(
        "vs oracle: GPU-hours over the oracle's. room left: share of the GPU-hours between the oracle and "
        "the cheapest static fleet reaching the goal that the policy still spends (0% = oracle)."
    )
    tessera = document.get("tessera")
    if tessera is not None:
        baselines = [
            row["gpuHours"] for name, row in document.items()
            if name not in ("tessera", "oracle") and row["reachedSloGoal"]
        ]
        checks = {
            f"SLO attainment >= {SLO_ATTAINMENT_GOAL:.0%}": tessera["reachedSloGoal"],
            "fewer GPU-hours than every baseline reaching the goal": all(
                tessera["gpuHours"] < hours for hours in baselines
            ),
            f"within {ORACLE_MARGIN:.0%} of the oracle's GPU-hours": tessera["gpuHoursOverOracle"] is not None
            and tessera["gpuHoursOverOracle"] <= ORACLE_MARGIN,
            f"at most {CHANGES_PER_HOUR_TARGET:g} replica changes per hour": tessera["replicaChangesPerHour"]
            <= CHANGES_PER_HOUR_TARGET,
        }
        for label, met in checks.items():
            console.print(f"tessera target: {label}: {'[green]met[/green]' if met else '[red]not met[/red]'}")
    if attribution:
        console.print(f"[dim]{attribution}[/dim]")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", default=DEFAULT_TRACE, help="trace CSV (Azure format) or synthetic:SHAPE[:SEED]")
    parser.add_argument("--json", type=Path, required=True, help="where to write the JSON figures")
    parser.add_argument("--plot", type=Path, required=True, help="where to write the PNG of replicas over time")
    parser.add_argument("--rate-scale", type=int, default=16, help="each request becomes K (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rate-scale jitter")
    parser.add_argument("--profile", default="llama-3.1-8b-h100", help="profile name or file")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--policies", default=",".join(ORDER), help="comma-separated subset of policies")
    args = parser.parse_args(argv)
    args.policies = [name.strip() for name in args.policies.split(",") if name.strip()]
    unknown = [name for name in args.policies if name not in POLICIES]
    if unknown:
        parser.error(f"unknown policies: {', '.join(unknown)}")
    started = time.monotonic()
    outcomes = run(args)
    document = report(outcomes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    attribution = attribution_for(args.trace)
    trace = _trace(_resolve(args.trace), args.rate_scale, args.seed)
    title = f"{len(trace):,} requests from {Path(args.trace).name} x{args.rate_scale}"
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot_timelines(
        [(f"{name} ({outcome.setting_name}={outcome.setting:g})", outcome.result) for name, outcome in outcomes.items()],
        args.plot,
        f"Replicas against load: {title}",
        attribution,
    )
    print_table(document, f"Autoscaling policies on {title} ({time.monotonic() - started:.0f} s)", attribution)
    return 0


if __name__ == "__main__":
    sys.exit(main())
