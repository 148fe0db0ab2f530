"""`tessera dev ...`: the local development cluster (`cluster up|down|status|kubeconfig`), the local
node agent (`node`) and local pods' logs (`logs`). `tessera dev up|down|status` are reserved for the
whole local Tessera stack.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from tessera_operator.devcluster.cluster import DevCluster
    from tessera_operator.devcluster.profile import Profile

console = Console(stderr=True)
dev_app = typer.Typer(
    help="Local development: a real control plane with fake GPU nodes and a local node.", no_args_is_help=True
)
cluster_app = typer.Typer(help="The local Kubernetes control plane.", no_args_is_help=True)
dev_app.add_typer(cluster_app, name="cluster")

NameOption = Annotated[
    str, typer.Option("--name", help="Cluster name (folder under ~/.cache/tessera/clusters).")
]
DirOption = Annotated[
    Path | None, typer.Option("--dir", help="Cluster folder (overrides --name's default place).")
]


def register(app: typer.Typer) -> None:
    """Add the `dev` command group to the `tessera` CLI."""
    app.add_typer(dev_app, name="dev")


def _cluster(
    name: str, directory: Path | None, profile: Profile | None = None, audit: bool = False
) -> DevCluster:
    from tessera_operator.devcluster.cluster import DevCluster
    from tessera_operator.devcluster.paths import clusters_root

    return DevCluster((directory or clusters_root() / name).resolve(), name, profile=profile, audit=audit)


@cluster_app.command("up")
def cluster_up(
    name: NameOption = "dev",
    directory: DirOption = None,
    profile: Annotated[
        Path | None, typer.Option(help="Cluster profile YAML (default: the packaged one).")
    ] = None,
    build: Annotated[bool, typer.Option(help="Build missing binaries first (cold build: ~25 min).")] = False,
    audit: Annotated[
        bool, typer.Option(help="Write the apiserver's audit log of writes (logs/audit.log).")
    ] = False,
    local_node: Annotated[bool, typer.Option(help="Start the local node agent.")] = True,
) -> None:
    """Start a fresh cluster and wait until its nodes are Ready; prints how long it took."""
    from tessera_operator.devcluster import binaries
    from tessera_operator.devcluster.profile import load_profile

    if build:
        binaries.build(console=console)
    loaded = load_profile(profile)
    loaded.local_node.enabled = loaded.local_node.enabled and local_node
    cluster = _cluster(name, directory, profile=loaded, audit=audit)
    start = time.monotonic()
    try:
        with console.status(f"starting cluster {name} ..."):
            cluster.up(report=lambda step: console.print(f"  [green]✓[/] {step}"))
    except binaries.BinariesMissingError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from error
    except (RuntimeError, TimeoutError) as error:
        console.print(f"[red]cluster {name} failed to start:[/] {error}")
        raise typer.Exit(1) from error
    elapsed = time.monotonic() - start
    console.print(f"[bold green]cluster {name} up in {elapsed:.1f} s[/] (logs in {cluster.layout.logs})")
    console.print(f"export KUBECONFIG={cluster.kubeconfig}")


@cluster_app.command("down")
def cluster_down(
    name: NameOption = "dev",
    directory: DirOption = None,
    delete: Annotated[bool, typer.Option(help="Also remove the cluster's folder.")] = False,
) -> None:
    """Stop every process of the cluster (no process or port is left)."""
    cluster = _cluster(name, directory)
    stopped = cluster.down()
    if delete:
        cluster.delete()
    console.print(f"cluster {name}: stopped {', '.join(stopped) or 'nothing (not running)'}")


@cluster_app.command("status")
def cluster_status(
    name: NameOption = "dev",
    directory: DirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the cluster's components, ports and nodes."""
    cluster = _cluster(name, directory)
    state = cluster.state()
    components = cluster.component_status()
    nodes = _node_summary(cluster) if cluster.is_running() else []
    if as_json:
        payload = {
            "name": name,
            "directory": str(cluster.layout.root),
            "running": cluster.is_running(),
            "server": state.server if state else None,
            "kubeconfig": str(cluster.kubeconfig),
            "ports": state.ports if state else {},
            "upSeconds": state.up_seconds if state else None,
            "components": [
                {"name": c.name, "pid": c.pid, "alive": c.alive, "log": c.log} for c in components
            ],
            "nodes": nodes,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    if state is None or not components:
        console.print(f"cluster {name}: not running")
        raise typer.Exit(1)
    table = Table(title=f"cluster {name} — {state.server}")
    for column in ("component", "pid", "alive", "log"):
        table.add_column(column)
    for c in components:
        table.add_row(c.name, str(c.pid), "[green]yes[/]" if c.alive else "[red]no[/]", c.log)
    console.print(table)
    if nodes:
        ready = sum(1 for n in nodes if n["ready"])
        console.print(f"nodes: {ready}/{len(nodes)} Ready: " + ", ".join(str(n["name"]) for n in nodes))


def _node_summary(cluster: DevCluster) -> list[dict[str, object]]:
    from tessera_operator.devcluster.readiness import node_is_ready

    try:
        items = cluster.rest_client().checked("GET", "/api/v1/nodes")["items"]
    except (OSError, RuntimeError):  # status must print even when the API is down
        return []
    return [
        {
            "name": node["metadata"]["name"],
            "ready": node_is_ready(node),
            "gpuProduct": node["metadata"].get("labels", {}).get("nvidia.com/gpu.product"),
        }
        for node in items
    ]


@cluster_app.command("kubeconfig")
def cluster_kubeconfig(
    name: NameOption = "dev",
    directory: DirOption = None,
    content: Annotated[bool, typer.Option(help="Print the file's content instead of its path.")] = False,
) -> None:
    """Print the admin kubeconfig's path (or content): `export KUBECONFIG=$(tessera dev cluster kubeconfig)`."""
    path = _cluster(name, directory).kubeconfig
    if not path.is_file():
        console.print(f"cluster {name} has no kubeconfig (start it with `tessera dev cluster up`)")
        raise typer.Exit(1)
    sys.stdout.write(path.read_text() if content else f"{path}\n")


@dev_app.command("node")
def dev_node(
    name: NameOption = "dev",
    cluster_dir: Annotated[Path | None, typer.Option("--cluster-dir", help="Cluster folder.")] = None,
) -> None:
    """Run the local node agent (started for you by `tessera dev cluster up`)."""
    from tessera_operator.devcluster.node.agent import run_agent
    from tessera_operator.devcluster.paths import clusters_root

    run_agent((cluster_dir or clusters_root() / name).resolve())


@dev_app.command("logs")
def dev_logs(
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    container: Annotated[str | None, typer.Option("--container", "-c")] = None,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="The previous run's log.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    name: NameOption = "dev",
    directory: DirOption = None,
) -> None:
    """Print a local-node pod's container log."""
    from tessera_operator.devcluster.podlogs import LogsNotFoundError, container_log

    layout = _cluster(name, directory).layout
    try:
        path = container_log(layout, namespace, pod, container, previous)
    except LogsNotFoundError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            elif follow:
                time.sleep(0.3)
            else:
                break
