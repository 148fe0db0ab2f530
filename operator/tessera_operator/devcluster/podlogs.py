"""Reading local pods' container logs from a cluster directory (`tessera dev logs`)."""

from __future__ import annotations

from pathlib import Path

from tessera_operator.devcluster.layout import Layout
from tessera_operator.devcluster.node.logserver import log_files


class LogsNotFoundError(LookupError):
    """No logs for the asked pod/container."""


def pod_log_dir(layout: Layout, namespace: str, pod: str) -> Path:
    """The newest log folder of a pod (a re-created pod of the same name has a new uid)."""
    root = layout.node_dir / "pod-logs"
    candidates = [p for p in root.glob(f"{namespace}_{pod}_*") if p.is_dir()] if root.is_dir() else []
    if not candidates:
        raise LogsNotFoundError(f"no logs for pod {namespace}/{pod} on the local node")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def container_log(
    layout: Layout, namespace: str, pod: str, container: str | None, previous: bool = False
) -> Path:
    """The log file of a container's current (or previous) run; the container may be omitted if only one."""
    folder = pod_log_dir(layout, namespace, pod)
    containers = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if container is None:
        if len(containers) != 1:
            raise LogsNotFoundError(
                f"pod {pod} has several containers, choose one with -c: {', '.join(containers)}"
            )
        container = containers[0]
    files = log_files(folder / container)
    if not files:
        raise LogsNotFoundError(f"no logs for container {container} (containers: {', '.join(containers)})")
    if previous:
        if len(files) < 2:
            raise LogsNotFoundError(f"container {container} has no previous run")
        return files[-2]
    return files[-1]
