"""What `tessera dev up` records in the cluster folder (devstack.json), and finding leftover processes."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "devstack.json"


@dataclass
class StackState:
    """The stack's facts other commands read: where the router listens and which kubeconfig to use."""

    name: str
    kubeconfig: str
    router_url: str | None = None
    release: str = "tessera"
    release_namespace: str = "tessera-system"
    models_namespace: str = "default"
    served_model: str = "smollm2"
    step_seconds: dict[str, float] = field(default_factory=dict)
    first_token_seconds: float | None = None
    answer: str | None = None

    def to_json(self) -> dict[str, Any]:
        """camelCase JSON, as every Tessera JSON output."""
        return {
            "name": self.name,
            "kubeconfig": self.kubeconfig,
            "routerUrl": self.router_url,
            "release": self.release,
            "releaseNamespace": self.release_namespace,
            "modelsNamespace": self.models_namespace,
            "servedModel": self.served_model,
            "stepSeconds": self.step_seconds,
            "firstTokenSeconds": self.first_token_seconds,
            "answer": self.answer,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> StackState:
        """Inverse of to_json."""
        return StackState(
            name=str(data["name"]),
            kubeconfig=str(data["kubeconfig"]),
            router_url=data.get("routerUrl"),
            release=str(data.get("release", "tessera")),
            release_namespace=str(data.get("releaseNamespace", "tessera-system")),
            models_namespace=str(data.get("modelsNamespace", "default")),
            served_model=str(data.get("servedModel", "smollm2")),
            step_seconds={str(k): float(v) for k, v in (data.get("stepSeconds") or {}).items()},
            first_token_seconds=data.get("firstTokenSeconds"),
            answer=data.get("answer"),
        )

    def save(self, cluster_root: Path) -> None:
        """Write atomically, so a concurrent `status` never reads half a file."""
        path = cluster_root / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)

    @staticmethod
    def load(cluster_root: Path) -> StackState | None:
        """The recorded state, or None when `dev up` never ran for this cluster."""
        try:
            return StackState.from_json(json.loads((cluster_root / STATE_FILE).read_text()))
        except (FileNotFoundError, ValueError, KeyError):
            return None


def processes_of(cluster_root: Path) -> dict[int, str]:
    """Live processes that belong to a cluster: pid -> command line.

    A process belongs to the cluster when its command line or its working directory lies under
    the cluster folder: every control-plane component and the node agent are started with paths
    under it, and every local pod runs in `<cluster>/node/pods/<pod>/work`. This is how `down`
    proves that nothing is left, independently of what the recorded pids say.
    """
    root = str(cluster_root.resolve())
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            raw = (entry / "cmdline").read_bytes()
            if not raw:  # kernel threads and zombies have no command line
                continue
            command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
            cwd = ""
            with contextlib.suppress(OSError):
                cwd = os.readlink(entry / "cwd")
            if _under(cwd, root) or f"{root}/" in command or command.endswith(root):
                found[int(entry.name)] = command
    return found


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")
