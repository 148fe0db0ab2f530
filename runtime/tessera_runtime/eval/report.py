"""Show a ModelEvaluation: a rich table for people, a PNG of every task's difference with its interval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from tessera_operator.api.v1alpha1 import ModelEvaluation, TaskResult

VERDICT_STYLE = {"Pass": "green", "Fail": "red", "Inconclusive": "yellow", "Error": "magenta"}
VERDICT_COLOUR = {"Pass": "#2e7d32", "Fail": "#c62828", "Inconclusive": "#f9a825", "Error": "#6a1b9a"}


def _number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _interval(task: TaskResult) -> str:
    if task.ci_lower is None or task.ci_upper is None:
        return "—"
    return f"[{_signed(task.ci_lower)}, {_signed(task.ci_upper)}]"


def _signed(value: float) -> str:
    return f"{value:+.3f}" if abs(value) < 1000 else f"{value:+.2e}"


def evaluation_table(evaluation: ModelEvaluation) -> Table:
    """One row per task: metric, both figures, the difference with its interval, margin, p-value, verdict."""
    spec = evaluation.spec
    result = evaluation.status.result if evaluation.status else None
    tasks = list(result.tasks) if result else []
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=f"{spec.model}: candidate {spec.candidate.version} vs baseline {spec.baseline.version}",
        caption=f"suite {spec.suite.name} {spec.suite.digest[:19]}…",
    )
    table.add_column("task", no_wrap=True)
    table.add_column("cand.", justify="right")
    table.add_column("base.", justify="right")
    table.add_column("interval", justify="right", no_wrap=True)
    table.add_column("margin", justify="right")
    with_threshold = any(t.threshold is not None for t in tasks)
    if with_threshold:
        table.add_column("bound", justify="right")
    table.add_column("p", justify="right", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("verdict", no_wrap=True)
    for task in tasks:
        style = VERDICT_STYLE.get(task.verdict, "")
        difference = _interval(task)
        row = [task.name, _number(task.candidate), _number(task.baseline), difference,
               _number(task.margin, 3)]  # fmt: skip
        if with_threshold:
            row.append(_number(task.threshold))
        row += [_number(task.p_value, 2), str(task.samples), f"[{style}]{task.verdict}[/]"]
        table.add_row(*row)
    return table


def print_report(evaluation: ModelEvaluation, console: Console | None = None) -> None:
    """The table, the overall verdict and each task's reason."""
    console = console or Console()
    console.print(evaluation_table(evaluation))
    result = evaluation.status.result if evaluation.status else None
    if result is None:
        console.print("[yellow]No result yet.[/]")
        return
    style = VERDICT_STYLE.get(result.verdict, "")
    headline = result.reason.split("; ")[0]
    console.print(f"Verdict: [bold {style}]{result.verdict}[/] — {headline}", highlight=False)
    for task in result.tasks:
        console.print(f"  [bold]{task.name}[/]: {task.reason}", highlight=False)


def render(evaluation: ModelEvaluation, output: str) -> str:
    """The object as JSON or YAML (camelCase, as the apiserver stores it)."""
    data: dict[str, Any] = evaluation.to_api()
    if output == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False)


def plot_differences(evaluation: ModelEvaluation, path: Path) -> None:
    """A PNG: each task's difference (higher is better) with its interval, and a red tick at -margin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = evaluation.status.result if evaluation.status else None
    tasks = list(result.tasks) if result else []
    figure, axes = plt.subplots(figsize=(8, 1.2 + 0.6 * max(1, len(tasks))))
    for row, task in enumerate(tasks):
        colour = VERDICT_COLOUR.get(task.verdict, "grey")
        if task.difference is not None:
            low = task.difference - task.ci_lower if task.ci_lower is not None else 0.0
            high = task.ci_upper - task.difference if task.ci_upper is not None else 0.0
            axes.errorbar(task.difference, row, xerr=[[low], [high]], fmt="o", color=colour, capsize=5)
        else:
            axes.text(0, row, "no figures (Error)", va="center", ha="center", color=colour)
        if task.margin is not None:
            axes.plot([-task.margin, -task.margin], [row - 0.35, row + 0.35], color="#c62828", linewidth=2)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(tasks)), [f"{t.name} ({t.metric})\n{t.verdict}" for t in tasks])
    axes.set_ylim(-0.7, max(0.7, len(tasks) - 0.3))
    axes.invert_yaxis()
    axes.set_xlabel("candidate minus baseline (higher is better); red tick: minus the margin")
    spec = evaluation.spec
    verdict = result.verdict if result else "pending"
    axes.set_title(f"{spec.model}: {spec.candidate.version} vs {spec.baseline.version} — {verdict}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def load_evaluation_file(path: Path) -> ModelEvaluation:
    """A ModelEvaluation from a YAML or JSON file (for example what `tessera evaluate --out` wrote)."""
    return ModelEvaluation.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
