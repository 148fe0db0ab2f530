"""The files of one local cluster, all under its directory, and its recorded state (cluster.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera_operator.devcluster.processes import ProcessRecord

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of the service range: the `kubernetes` Service
FAKE_POD_CIDR = "127.20.0.0/16"  # kwok's pods: nothing listens there, so a connection is refused fast
ADMIN_USER = "tessera-dev-admin"


@dataclass(frozen=True)
class Layout:
    """Paths inside a cluster directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters)."""
        return self.root / "kubeconfig"

    def component_kubeconfig(self, component: str) -> Path:
        return self.root / "kubeconfigs" / f"{component}.kubeconfig"

    @property
    def profile(self) -> Path:
        return self.root / "profile.yaml"

    @property
    def kwok_stages(self) -> Path:
        return self.root / "kwok-stages.yaml"

    @property
    def audit_policy(self) -> Path:
        return self.root / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    @property
    def node_dir(self) -> Path:
        """The local node agent's working area: pods/ (per-pod dirs) and pod-logs/."""
        return self.root / "node"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


@dataclass
class ClusterState:
    """What `up` recorded, so that `status` and `down` (other commands) can find the cluster."""

    name: str
    ports: dict[str, int]
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    kubernetes_version: str = ""
    local_node: str | None = None
    audit: bool = False
    up_seconds: float | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ports": self.ports,
            "processes": {k: v.to_json() for k, v in self.processes.items()},
            "kubernetesVersion": self.kubernetes_version,
            "localNode": self.local_node,
            "audit": self.audit,
            "upSeconds": self.up_seconds,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> ClusterState:
        return ClusterState(
            name=data["name"],
            ports={k: int(v) for k, v in data["ports"].items()},
            processes={k: ProcessRecord.from_json(v) for k, v in data.get("processes", {}).items()},
            kubernetes_version=data.get("kubernetesVersion", ""),
            local_node=data.get("localNode"),
            audit=bool(data.get("audit", False)),
            up_seconds=data.get("upSeconds"),
        )

    def save(self, layout: Layout) -> None:
        tmp = layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(layout.state_file)

    @staticmethod
    def load(layout: Layout) -> ClusterState | None:
        try:
            return ClusterState.from_json(json.loads(layout.state_file.read_text()))
        except FileNotFoundError:
            return None
