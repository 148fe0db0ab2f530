"""The inputs of the builders besides the Model: the resolved plan as applied, and operator settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tessera_operator import __version__
from tessera_operator.api.v1alpha1 import ResolvedPlan

DEFAULT_RUNTIME_IMAGE = f"ghcr.io/tessera-dev/tessera-runtime:{__version__}"


@dataclass(frozen=True)
class WorkloadPlan:
    """What the planner decided for one version, plus what scheduling needs to know about it.

    `plan` is written to status as is. `gpu_products` are the values of the node label
    `nvidia.com/gpu.product` that mean the chosen accelerator (from the nodes that offer it, or the
    planner catalogue's label mapping). `cpu`/`memory` are the host resources one pod requests.
    """

    plan: ResolvedPlan
    cpu: str
    memory: str
    gpu_products: tuple[str, ...] = ()

    def to_annotation(self) -> str:
        """Compact JSON kept on the workload, so a version keeps its plan however the cluster changes."""
        data: dict[str, Any] = {"plan": self.plan.to_api(), "cpu": self.cpu, "memory": self.memory}
        if self.gpu_products:
            data["gpuProducts"] = sorted(self.gpu_products)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_annotation(text: str | None) -> WorkloadPlan | None:
        """The plan recorded by `to_annotation`, or None when absent or unreadable."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return WorkloadPlan(
                plan=ResolvedPlan.model_validate(data["plan"]),
                cpu=str(data["cpu"]),
                memory=str(data["memory"]),
                gpu_products=tuple(str(p) for p in data.get("gpuProducts", ())),
            )
        except (ValueError, KeyError, TypeError, ValidationError):
            return None

    @property
    def on_cpu(self) -> bool:
        """Whether the version runs on CPU (the transformers engine), not on GPUs."""
        return self.plan.accelerator.lower() == "cpu"

    @property
    def multi_node(self) -> bool:
        """Whether one replica spans several nodes (a LeaderWorkerSet rather than a Deployment)."""
        return self.plan.nodes_per_replica > 1

    @property
    def gpus_per_pod(self) -> int:
        """GPUs each pod of a replica asks for (a replica's GPUs spread evenly over its nodes)."""
        if self.on_cpu:
            return 0
        return max(1, self.plan.gpus_per_replica // max(1, self.plan.nodes_per_replica))


@dataclass(frozen=True)
class DesiredSettings:
    """Operator-wide choices the builders need (from the operator's environment, see main.py)."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    image_pull_policy: str = "IfNotPresent"
    weights_cache_claim: str | None = None
    """A PersistentVolumeClaim that caches weights across pods (a folder per source); emptyDir when None."""
    drain_seconds: int = 60
    """Seconds a terminating server gets to finish in-flight streams."""
    startup_budget_floor_seconds: int = 300
    """Smallest startup-probe budget, whatever the load estimate."""
    startup_budget_factor: float = 3.0
    """Startup-probe budget = factor x the planner's estimated load time (never below the floor)."""
    probe_period_seconds: int = 10
    cpu_node_selector: dict[str, str] = field(default_factory=dict)
    """Extra node selector for CPU models (e.g. the local dev node's label)."""
    gpu_shm_size: str = "16Gi"
    cpu_shm_size: str = "512Mi"
    vllm_master_port: int = 29500
    cluster_domain: str = "cluster.local"
    evaluator_cluster_role: str = "tessera-evaluator"
    """ClusterRole bound to the ServiceAccount of evaluation Jobs (see OperatorSettings)."""

    @property
    def termination_grace_seconds(self) -> int:
        """Drain time plus a margin for the process to exit after draining."""
        return self.drain_seconds + 15
