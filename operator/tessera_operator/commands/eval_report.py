"""`tessera eval report NAME`: show a ModelEvaluation as a table, and plot it to a PNG."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

eval_app = typer.Typer(name="eval", help="Look at evaluation results.", no_args_is_help=True)


@eval_app.command("report")
def report(
    name: str | None = typer.Argument(None, help="ModelEvaluation name (omit with --file)."),
    namespace: str = typer.Option("default", "-n", "--namespace", help="Namespace of the ModelEvaluation."),
    file: Path | None = typer.Option(
        None, "--file", exists=True, dir_okay=False, help="Read it from a file."
    ),
    png: Path | None = typer.Option(
        None, "--png", help="Write a PNG of each task's difference and interval."
    ),
    output: str = typer.Option("table", "--output", "-o", help="table, json or yaml."),
) -> None:
    """Show a ModelEvaluation: every task's figures, interval, p-value and verdict."""
    from tessera_runtime.eval.report import load_evaluation_file, plot_differences, print_report, render

    if file is None and name is None:
        raise typer.BadParameter("give a ModelEvaluation NAME or --file")
    if output not in {"table", "json", "yaml"}:
        raise typer.BadParameter("table, json or yaml", param_hint="--output")
    if file is not None:
        evaluation = load_evaluation_file(file)
    else:
        from tessera_runtime.eval import cluster

        assert name is not None
        evaluation = cluster.read_evaluation(cluster.api_client(), namespace, name)
    if output == "table":
        print_report(evaluation, Console())
    else:
        typer.echo(render(evaluation, output))
    if png is not None:
        plot_differences(evaluation, png)
        Console(stderr=True).print(f"wrote {png}")


def register(app: typer.Typer) -> None:
    """Add the `eval` group."""
    app.add_typer(eval_app, name="eval")
