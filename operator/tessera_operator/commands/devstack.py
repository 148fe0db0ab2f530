"""`tessera dev up | down | status`: the whole Tessera system on this machine, in one command."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from tessera_operator.commands.dev import DirOption, NameOption, dev_app

if TYPE_CHECKING:
    from tessera_operator.devcluster.cluster import DevCluster
    from tessera_operator.devstack.kube import ModelSummary
    from tessera_operator.devstack.stack import UpResult

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add `up`, `down` and `status` to the `tessera dev` group (the `dev` module registers the group)."""
    dev_app.command("up")(dev_up)
    dev_app.command("down")(dev_down)
    dev_app.command("status")(dev_status)


class RichReporter:
    """Shows each step with a spinner while it runs, then a tick and its time."""

    def __init__(self) -> None:
        self._status: Status | None = None

    def begin(self, label: str) -> None:
        self._status = console.status(f"{label} ...")
        self._status.start()

    def end(self, label: str, seconds: float, note: str) -> None:
        if self._status is not None:
            self._status.stop()
        console.print(
            f"  [green]✓[/] {label} [bold]{seconds:.1f} s[/]" + (f"  [dim]{note}[/]" if note else "")
        )

    def info(self, message: str) -> None:
        console.print(f"  [yellow]…[/] {message}")

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()


def dev_up(
    name: NameOption = "dev",
    directory: DirOption = None,
    with_gpu_examples: Annotated[
        bool,
        typer.Option(help="Also apply the 8B and 70B GPU examples (planned and scheduled on fake nodes)."),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds the whole command may take.")] = 600.0,
    helm_set: Annotated[
        list[str] | None, typer.Option("--set", help="Extra chart value for helm (key=value; repeatable).")
    ] = None,
) -> None:
    """Start everything: control plane, chart, SmolLM2 on CPU, and a first answer through the router."""
    from tessera_operator.devcluster.binaries import BinariesMissingError
    from tessera_operator.devcluster.readiness import ComponentDiedError
    from tessera_operator.devstack.chat import process_started_monotonic
    from tessera_operator.devstack.kube import StackError
    from tessera_operator.devstack.stack import Stack, UpOptions

    options = UpOptions(
        name,
        directory,
        with_gpu_examples,
        timeout,
        helm_set=tuple(helm_set or ()),
        started_at=process_started_monotonic(),
    )
    reporter = RichReporter()
    console.print(f"[bold]tessera dev up[/] {name}")
    try:
        stack = Stack(options, reporter)
        result = stack.up()
    except (
        StackError,
        BinariesMissingError,
        ComponentDiedError,
        RuntimeError,
        TimeoutError,
        OSError,
    ) as error:
        reporter.stop()
        console.print(f"[red]dev up failed:[/] {error}")
        console.print(
            f"logs: {directory or '~/.cache/tessera/clusters/' + name}/logs and node/pod-logs; "
            f"`tessera dev logs POD -n NS --name {name}`; stop with `tessera dev down --name {name}`"
        )
        raise typer.Exit(1) from error
    _print_usage(result)


def _print_usage(result: UpResult) -> None:
    state = result.state
    url = state.router_url
    total = time.monotonic() - result.chat.first_token_at + result.first_token_seconds
    console.print(
        f"\n[bold green]Tessera is up[/]: command → first token [bold]{result.first_token_seconds:.1f} s[/] "
        f"(whole command {total:.1f} s)"
    )
    console.print(f"smollm2 answered: [italic]{result.chat.answer.strip()}[/]")
    for model in result.gpu_models:
        console.print(f"  {model.name}: {model.plan or 'not planned yet'} ({model.message})")
    console.print(f"\n[bold]Router[/]  {url}/v1   (OpenAI-compatible; model: {state.served_model})")
    console.print("\n[bold]curl[/]")
    body = json.dumps({"model": state.served_model, "messages": [{"role": "user", "content": "Hello!"}]})
    print(f"curl -s {url}/v1/chat/completions -H 'Content-Type: application/json' -d '{body}'")
    console.print("\n[bold]Python (openai)[/]")
    print(
        "from openai import OpenAI\n"
        f'client = OpenAI(base_url="{url}/v1", api_key="unused")\n'
        f'reply = client.chat.completions.create(model="{state.served_model}", '
        'messages=[{"role": "user", "content": "Hello!"}])\n'
        "print(reply.choices[0].message.content)"
    )
    console.print("\n[bold]kubectl[/]")
    from tessera_operator.devcluster.binaries import find_binaries

    print(f"{find_binaries().kubectl} --kubeconfig {state.kubeconfig} get models")
    console.print(
        f"\nstatus: tessera dev status --name {state.name}    stop: tessera dev down --name {state.name}"
    )


def dev_down(name: NameOption = "dev", directory: DirOption = None) -> None:
    """Stop everything `dev up` started and check, by pid, that no process of it is left."""
    from tessera_operator.devstack.stack import down

    with console.status(f"stopping {name} ..."):
        result = down(name, directory)
    if result.leftover:
        for pid, command in sorted(result.leftover.items()):
            console.print(f"[red]still running[/] pid {pid}: {command[:160]}")
        raise typer.Exit(1)
    what = ", ".join(result.stopped) or "nothing (not running)"
    console.print(f"{name}: stopped {what} in {result.seconds:.1f} s; no process left")


def dev_status(
    name: NameOption = "dev",
    directory: DirOption = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
) -> None:
    """Components, Models and endpoints of the stack; `--output json` for scripts."""
    from tessera_operator.devstack.stack import cluster_for, live_router_url, models_or_empty, pod_endpoints
    from tessera_operator.devstack.state import StackState

    cluster = cluster_for(name, directory)
    state = StackState.load(cluster.layout.root)
    running = cluster.is_running()
    models = models_or_empty(cluster)
    router_url = live_router_url(cluster, state.release_namespace) if state is not None and running else None
    if output == "json":
        payload = {
            "name": name,
            "running": running,
            "routerUrl": router_url,
            "kubeconfig": str(cluster.kubeconfig),
            "models": [{"name": m.name, "namespace": m.namespace, "ready": m.ready} for m in models],
            "components": [
                {"name": c.name, "pid": c.pid, "alive": c.alive} for c in cluster.component_status()
            ],
            "endpoints": pod_endpoints(cluster),
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    if output != "text":
        console.print(f"[red]--output must be text or json, not {output!r}[/]")
        raise typer.Exit(2)
    if not running:
        console.print(f"{name}: not running (start it with `tessera dev up --name {name}`)")
        raise typer.Exit(1)
    _print_status(name, cluster.kubeconfig, router_url, models, cluster)


def _print_status(
    name: str, kubeconfig: Path, router_url: str | None, models: list[ModelSummary], cluster: DevCluster
) -> None:
    from tessera_operator.devstack.stack import pod_endpoints

    components = Table(title=f"{name}: components")
    for column in ("component", "pid", "alive"):
        components.add_column(column)
    for c in cluster.component_status():
        components.add_row(c.name, str(c.pid), "[green]yes[/]" if c.alive else "[red]no[/]")
    console.print(components)
    table = Table(title="Models")
    for column in ("namespace", "name", "ready", "replicas", "plan"):
        table.add_column(column)
    for model in models:
        table.add_row(
            model.namespace,
            model.name,
            "[green]yes[/]" if model.ready else "[yellow]no[/]",
            f"{model.ready_replicas}/{model.replicas}",
            model.plan,
        )
    console.print(table)
    endpoints = Table(title="Pods (loopback IPs are reachable from this machine)")
    for column in ("pod", "component", "node", "ip", "ready"):
        endpoints.add_column(column, overflow="fold")
    for row in pod_endpoints(cluster):
        endpoints.add_row(
            f"{row['namespace']}/{row['pod']}", row["component"], row["node"], row["ip"], row["ready"]
        )
    console.print(endpoints)
    console.print(f"router: {router_url + '/v1' if router_url else 'no Ready router pod'}")
    console.print(f"kubeconfig: {kubeconfig}")
