"""`tessera evaluate`: run an EvaluationSuite file against two OpenAI endpoints, for model teams' pipelines.

Exit status, so a pipeline can branch on the verdict:
  0 Pass, 1 Fail, 3 Inconclusive, 4 Error (2 stays the usage-error status of the command line).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

EXIT_CODES = {"Pass": 0, "Fail": 1, "Inconclusive": 3, "Error": 4}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def load_suite_file(path: Path) -> Any:
    """The EvaluationSuite in a YAML file (the first document of that kind)."""
    from tessera_operator.api.v1alpha1 import EvaluationSuite

    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as error:
        raise typer.BadParameter(f"cannot read {path}: {error}", param_hint="--suite") from error
    for document in documents:
        if isinstance(document, dict) and document.get("kind", "EvaluationSuite") == "EvaluationSuite":
            return EvaluationSuite.model_validate(document)
    raise typer.BadParameter(f"{path} holds no EvaluationSuite", param_hint="--suite")


def evaluate(
    suite: Path = typer.Option(
        ..., "--suite", exists=True, dir_okay=False, help="EvaluationSuite YAML file."
    ),
    candidate: str = typer.Option(..., "--candidate", help="OpenAI API base URL of the candidate."),
    baseline: str = typer.Option(..., "--baseline", help="OpenAI API base URL of the baseline."),
    model: str = typer.Option("model", "--model", help="Label of the model in the result."),
    candidate_model: str | None = typer.Option(
        None, help="`model` sent to the candidate (default: its first)."
    ),
    baseline_model: str | None = typer.Option(
        None, help="`model` sent to the baseline (default: its first)."
    ),
    candidate_version: str = typer.Option("candidate", help="Label of the candidate version."),
    baseline_version: str = typer.Option("baseline", help="Label of the baseline version."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--output", "-o", help="table, json or yaml."),
    out: Path | None = typer.Option(
        None, "--out", help="Also write the ModelEvaluation (YAML) to this file."
    ),
    png: Path | None = typer.Option(None, "--png", help="Also plot each task's difference to this PNG."),
    namespace: str = typer.Option("default", "-n", "--namespace", help="Namespace of configMapRef data."),
    concurrency: int = typer.Option(4, min=1, help="Requests in flight per endpoint."),
    request_timeout: float = typer.Option(120.0, min=0.1, help="Seconds one request may take."),
    resamples: int = typer.Option(2000, min=100, help="Bootstrap resamples."),
    slo_ttft: float | None = typer.Option(None, help="TTFT objective in seconds (latency tasks' threshold)."),
    slo_tpot: float | None = typer.Option(None, help="Time-per-output-token objective in seconds."),
    slo_percentile: int = typer.Option(95, min=50, max=100, help="Percentile the objectives apply to."),
) -> None:
    """Evaluate a candidate endpoint against a baseline endpoint on the same items.

    Exit status: 0 Pass, 1 Fail, 3 Inconclusive, 4 Error.
    """
    from tessera_operator.api.v1alpha1 import ServiceLevelObjective
    from tessera_runtime.eval.client import ClientSettings, Endpoint
    from tessera_runtime.eval.console import RichProgress
    from tessera_runtime.eval.report import plot_differences, print_report, render
    from tessera_runtime.eval.runner import EvaluationRequest, run_evaluation

    evaluation_suite = load_suite_file(suite)
    slo = None
    if slo_ttft is not None or slo_tpot is not None:
        slo = ServiceLevelObjective(
            time_to_first_token_seconds=slo_ttft,
            time_per_output_token_seconds=slo_tpot,
            percentile=slo_percentile,
        )
    request = EvaluationRequest(
        suite=evaluation_suite,
        suite_name=(evaluation_suite.metadata or {}).get("name") or suite.stem,
        model=model,
        candidate=Endpoint(candidate, candidate_model),
        baseline=Endpoint(baseline, baseline_model),
        candidate_version=candidate_version,
        baseline_version=baseline_version,
        slo=slo,
        read_config_map=_lazy_config_map_reader(namespace),
        client=ClientSettings(concurrency=concurrency, timeout_s=request_timeout),
        resamples=resamples,
        name=f"{model}-{candidate_version}"[:253],
    )
    console = Console(stderr=output != OutputFormat.table)
    with RichProgress(console) as progress:
        evaluation = asyncio.run(run_evaluation(request, progress))
    if output == OutputFormat.table:
        print_report(evaluation, console)
    else:
        typer.echo(render(evaluation, output.value))
    if out is not None:
        out.write_text(render(evaluation, "yaml"), encoding="utf-8")
    if png is not None:
        plot_differences(evaluation, png)
    verdict = evaluation.status.result.verdict if evaluation.status and evaluation.status.result else "Error"
    raise typer.Exit(EXIT_CODES[verdict])


def _lazy_config_map_reader(namespace: str) -> Any:
    """Reads ConfigMaps through the local kubeconfig, connecting only if a task needs one."""

    def read(name: str, key: str) -> str:
        from tessera_runtime.eval import cluster

        return cluster.config_map_reader(cluster.api_client(), namespace)(name, key)

    return read


def register(app: typer.Typer) -> None:
    """Add `evaluate`."""
    app.command("evaluate")(evaluate)
