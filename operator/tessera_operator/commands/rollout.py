"""`tessera rollout status|promote|abort|retry MODEL`: look at and steer a gated rollout.

Steering goes through the API only: the command sets the annotations `tessera.dev/rollout-action`
and `tessera.dev/rollout-requested-by` on the Model (one JSON merge patch on metadata), and the
operator consumes them once, recording who asked in status.rollout.requestedBy.
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

ROLLOUT_ACTION = "tessera.dev/rollout-action"
ROLLOUT_REQUESTED_BY = "tessera.dev/rollout-requested-by"
ACTIONS = ("promote", "abort", "retry")

Json = dict[str, Any]

rollout_app = typer.Typer(name="rollout", help="Look at and steer gated rollouts.", no_args_is_help=True)


def action_patch(action: str, requested_by: str) -> Json:
    """The merge patch that asks the operator for `action` on behalf of `requested_by`."""
    if action not in ACTIONS:
        raise ValueError(f"unknown rollout action {action!r}; expected one of {', '.join(ACTIONS)}")
    return {"metadata": {"annotations": {ROLLOUT_ACTION: action, ROLLOUT_REQUESTED_BY: requested_by}}}


def current_user(kubeconfig_user: str | None = None) -> str:
    """Who is asking: the current kubeconfig context's user, else $USER, else the login name."""
    if kubeconfig_user:
        return kubeconfig_user
    return os.environ.get("USER") or getpass.getuser() or "unknown"


def _kubeconfig_user() -> str | None:
    try:
        from kubernetes import config as k8s_config

        _, active = k8s_config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    except Exception:  # in-cluster or no kubeconfig: fall back to $USER
        return None
    user = (active or {}).get("context", {}).get("user")
    return str(user) if user else None


def rollout_summary(model: Json) -> Json:
    """The rollout facts of a Model (wire form) in camelCase, for the table and for JSON output."""
    status = model.get("status") or {}
    rollout = status.get("rollout") or {}
    policy = (model.get("spec") or {}).get("rollout") or {}
    steps = policy.get("canarySteps") or []
    return {
        "model": model.get("metadata", {}).get("name"),
        "namespace": model.get("metadata", {}).get("namespace"),
        "phase": rollout.get("phase", "Idle" if policy else "NotGated"),
        "step": rollout.get("step", 0),
        "steps": len(steps),
        "stepStarted": rollout.get("stepStarted"),
        "message": rollout.get("message", ""),
        "stable": (status.get("stable") or {}).get("version"),
        "candidate": (status.get("candidate") or {}).get("version"),
        "traffic": {t["version"]: t["weight"] for t in status.get("traffic") or []},
        "evaluation": rollout.get("evaluation"),
        "verdict": None,
        "attempts": rollout.get("attempts", 0),
        "requestedBy": rollout.get("requestedBy"),
        "rejectedCandidates": list(status.get("rejectedCandidates") or []),
        "pendingAction": (model.get("metadata", {}).get("annotations") or {}).get(ROLLOUT_ACTION),
    }


def render_summary(summary: Json, console: Console) -> None:
    """Print the summary as rich tables."""
    table = Table(title=f"rollout of {summary['namespace']}/{summary['model']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    step = f"{summary['step'] + 1} of {summary['steps']}" if summary["phase"] == "Canary" else str(summary["step"])
    weights = ", ".join(f"{v}={w}%" for v, w in summary["traffic"].items()) or "-"
    evaluation = summary["evaluation"] or "-"
    if summary["verdict"]:
        evaluation += f" ({summary['verdict']})"
    rows = [
        ("phase", summary["phase"]), ("step", step), ("traffic", weights),
        ("stable", summary["stable"] or "-"), ("candidate", summary["candidate"] or "-"),
        ("evaluation", evaluation), ("attempts", str(summary["attempts"])),
        ("requested by", summary["requestedBy"] or "-"), ("message", summary["message"] or "-"),
    ]
    if summary["pendingAction"]:
        rows.append(("pending action", summary["pendingAction"]))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    rejected = summary["rejectedCandidates"]
    if rejected:
        listing = Table(title="rejected candidates")
        for column in ("version", "revision", "evaluation", "time", "reason"):
            listing.add_column(column)
        for entry in rejected:
            listing.add_row(*(str(entry.get(c) or "-") for c in ("version", "revision", "evaluation", "time", "reason")))
        console.print(listing)
    else:
        console.print("rejected candidates: none")


def _load_model(namespace: str, name: str) -> tuple[Any, Json]:
    from tessera_operator.k8s import Kube
    from tessera_operator.k8s.resources import MODEL

    kube = Kube.from_kubeconfig()
    model = kube.get(MODEL, namespace, name)
    if model is None:
        Console(stderr=True).print(f"[red]Model {namespace}/{name} not found[/red]")
        raise typer.Exit(1)
    return kube, model


def _verdict(kube: Any, namespace: str, name: str | None) -> str | None:
    if not name:
        return None
    from tessera_operator.k8s import KubeError
    from tessera_operator.k8s.resources import Resource

    try:
        evaluation = kube.get(Resource("tessera.dev/v1alpha1", "ModelEvaluation", "modelevaluations"), namespace, name)
    except KubeError:
        return None
    result = ((evaluation or {}).get("status") or {}).get("result") or {}
    verdict = result.get("verdict")
    return str(verdict) if verdict else None


@rollout_app.command("status")
def status(
    model: str = typer.Argument(..., help="Model name."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    output: str = typer.Option("table", "-o", "--output", help="table or json."),
) -> None:
    """Phase, step, traffic weights, candidate, evaluation verdict and rejected candidates."""
    kube, live = _load_model(namespace, model)
    summary = rollout_summary(live)
    summary["verdict"] = _verdict(kube, namespace, summary["evaluation"])
    if output == "json":
        typer.echo(json.dumps(summary, indent=2))
    else:
        render_summary(summary, Console())


def _request(action: str, model: str, namespace: str) -> None:
    from tessera_operator.k8s.resources import MODEL

    kube, _ = _load_model(namespace, model)
    who = current_user(_kubeconfig_user())
    kube.merge_patch(MODEL, namespace, model, action_patch(action, who))
    Console().print(f"asked the operator to {action} the rollout of {namespace}/{model} (requested by {who})")


@rollout_app.command("promote")
def promote(model: str = typer.Argument(...), namespace: str = typer.Option("default", "-n", "--namespace")) -> None:
    """Promote the candidate (refused after Fail or Error; allowed after Pass or Inconclusive)."""
    _request("promote", model, namespace)


@rollout_app.command("abort")
def abort(model: str = typer.Argument(...), namespace: str = typer.Option("default", "-n", "--namespace")) -> None:
    """Send all traffic back to stable, remove the candidate and record it as rejected."""
    _request("abort", model, namespace)


@rollout_app.command("retry")
def retry(model: str = typer.Argument(...), namespace: str = typer.Option("default", "-n", "--namespace")) -> None:
    """Evaluate the candidate again (also a rejected one)."""
    _request("retry", model, namespace)


def register(app: typer.Typer) -> None:
    """Add the `rollout` group."""
    app.add_typer(rollout_app, name="rollout")
