"""`tessera-runtime evaluate`: the evaluation Job. Reads EvaluationSuites from the API, evaluates the
candidate against the baseline, writes exactly one ModelEvaluation.

Exit status: 0 when the ModelEvaluation was written (whatever its verdict: a Fail is a finding, not a
failure of the Job); 1 when it could not be written (the Job's retry then tries again).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from tessera_operator.api.v1alpha1 import EvaluationSuite

VERSION_HEADER = "X-Tessera-Version"


def merge_suites(suites: list[tuple[str, EvaluationSuite]]) -> EvaluationSuite:
    """Several suites as one: their tasks in order (names prefixed by the suite when there are several).

    The confidence and timeout of the first suite apply to all.
    """
    from tessera_operator.api.v1alpha1 import EvaluationSuite

    if len(suites) == 1:
        return suites[0][1]
    tasks = []
    for name, suite in suites:
        for task in suite.spec.tasks:
            tasks.append(task.model_copy(update={"name": f"{name}-{task.name}"[:63].rstrip("-")}))
    first = suites[0][1].spec
    return EvaluationSuite(spec=first.model_copy(update={"tasks": tasks}))


def evaluate_command(
    suite_name: list[str] = typer.Option(
        ..., "--suite-name", help="EvaluationSuite to run (repeat for several)."
    ),
    namespace: str = typer.Option(..., "--namespace", help="Namespace of the Model, suites and evaluation."),
    model: str = typer.Option(..., "--model", help="Name of the Model evaluated."),
    candidate_url: str = typer.Option(..., "--candidate-url", help="OpenAI API base URL of the candidate."),
    baseline_url: str = typer.Option(..., "--baseline-url", help="OpenAI API base URL of the baseline."),
    candidate_version: str = typer.Option(..., "--candidate-version", help="Version hash of the candidate."),
    baseline_version: str = typer.Option(..., "--baseline-version", help="Version hash of the baseline."),
    output_name: str = typer.Option(..., "--output-name", help="Name of the ModelEvaluation to write."),
    served_model_name: str | None = typer.Option(None, help="Name sent as `model` (default: the Model's)."),
    concurrency: int = typer.Option(4, min=1, help="Requests in flight per endpoint."),
    request_timeout: float = typer.Option(120.0, min=0.1, help="Seconds one request may take."),
    retries: int = typer.Option(3, min=0, help="Further attempts after a transient failure."),
    resamples: int = typer.Option(2000, min=100, help="Bootstrap resamples."),
    dry_run: bool = typer.Option(False, help="Print the ModelEvaluation as YAML instead of writing it."),
) -> None:
    """Evaluate a candidate against a baseline and record the result as a ModelEvaluation."""
    from tessera_operator.api.v1alpha1 import ModelSpec, ServiceLevelObjective
    from tessera_runtime.eval import cluster
    from tessera_runtime.eval.client import ClientSettings, Endpoint
    from tessera_runtime.eval.console import RichProgress
    from tessera_runtime.eval.report import print_report, render
    from tessera_runtime.eval.runner import (
        EvaluationRequest,
        failed_evaluation,
        placeholder_suite,
        run_evaluation,
    )

    console = Console(stderr=True)
    api = cluster.api_client()
    stored_model = cluster.read_model(api, namespace, model)
    slo: ServiceLevelObjective | None = None
    name_to_send = served_model_name
    owner: list[dict[str, Any]] = []
    revisions: dict[str, str | None] = {}
    if stored_model is not None:
        spec = ModelSpec.model_validate(stored_model["spec"])
        slo = spec.slo
        name_to_send = name_to_send or spec.served_model_name or model
        meta = stored_model["metadata"]
        owner = [{"apiVersion": "tessera.dev/v1alpha1", "kind": "Model", "name": model, "uid": meta["uid"]}]
        status = stored_model.get("status") or {}
        for role in ("stable", "candidate"):
            ref = status.get(role) or {}
            if ref.get("version"):
                revisions[ref["version"]] = ref.get("revision")
    try:
        suite = merge_suites([(name, cluster.read_suite(api, namespace, name)) for name in suite_name])
    except Exception as error:  # a missing or invalid suite is an Error verdict, recorded like any other
        suite = None
        problem = f"cannot read EvaluationSuite(s) {', '.join(suite_name)}: {error}"
    settings = ClientSettings(concurrency=concurrency, timeout_s=request_timeout, retries=retries)
    request = EvaluationRequest(
        suite=suite or placeholder_suite(),
        suite_name=",".join(suite_name),
        model=model,
        candidate=Endpoint(candidate_url, name_to_send, {VERSION_HEADER: candidate_version}),
        baseline=Endpoint(baseline_url, name_to_send, {VERSION_HEADER: baseline_version}),
        candidate_version=candidate_version,
        baseline_version=baseline_version,
        candidate_revision=revisions.get(candidate_version),
        baseline_revision=revisions.get(baseline_version),
        slo=slo,
        read_config_map=cluster.config_map_reader(api, namespace),
        client=settings,
        resamples=resamples,
        name=output_name,
        namespace=namespace,
        labels={"tessera.dev/model": model, "tessera.dev/version": candidate_version},
    )
    if suite is None:
        evaluation = failed_evaluation(request, problem)
    else:
        with RichProgress(console) as progress:
            evaluation = asyncio.run(run_evaluation(request, progress))
    if owner:
        evaluation.metadata["ownerReferences"] = owner
    print_report(evaluation, console)
    if dry_run:
        typer.echo(render(evaluation, "yaml"))
        return
    try:
        written = cluster.write_evaluation(api, evaluation, namespace)
    except Exception as error:  # any API failure: say so and let the Job retry
        console.print(f"[red]could not write ModelEvaluation {namespace}/{output_name}: {error}[/]")
        raise typer.Exit(1) from error
    verdict = written.status.result.verdict if written.status and written.status.result else "?"
    console.print(f"ModelEvaluation {namespace}/{output_name} written: {verdict}")


def register(app: typer.Typer) -> None:
    """Add `evaluate`."""
    app.command("evaluate")(evaluate_command)
