"""From a Model and the cluster's nodes to a `WorkloadPlan`, through the planner.

The cluster's GPU offers come from node labels (`nvidia.com/gpu.product` and friends, mapped to
catalogue names by the planner) and allocatable `nvidia.com/gpu`. Plans are made against capacity,
not free GPUs: a version's plan must not change as its own pods take GPUs, and a Model asking for
more GPUs than are free is reported as Unschedulable (with the scheduler's words), not as infeasible.
`placement.accelerators` restricts the candidates to the listed types (most preferred first).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tessera_operator.api.v1alpha1 import ModelSpec, ResolvedPlan
from tessera_operator.desired import WorkloadPlan
from tessera_operator.desired.labels import GPU_PRODUCT_LABEL, GPU_RESOURCE
from tessera_operator.k8s.compare import parse_quantity
from tessera_operator.planner import (
    Architecture,
    ArchitectureError,
    Catalogue,
    CatalogueError,
    NodeOffer,
    PlanRequest,
    PlanRequestError,
    Slo,
    cpu_sizing,
    gpu_from_node_labels,
    plan,
)

Json = dict[str, Any]
log = logging.getLogger("tessera_operator.reconcile.planning")
GIB = 1024**3
DEFAULT_CPU = "1"
DEFAULT_CPU_MEMORY = "2Gi"
DEFAULT_CPU_LOAD_SECONDS = 60.0


@dataclass(frozen=True)
class GpuNodeGroup:
    """Nodes with the same GPU type and count: one planner offer."""

    gpu: str
    gpus_per_node: int
    nodes: int
    products: frozenset[str]
    cpu_per_node: float
    memory_per_node: float

    def offer(self) -> NodeOffer:
        """The planner's view of the group (capacity, not free GPUs: see the module docstring)."""
        return NodeOffer(self.gpu, self.gpus_per_node, self.nodes)


@dataclass(frozen=True)
class Inventory:
    """The GPU node groups of a cluster."""

    groups: tuple[GpuNodeGroup, ...]

    def describe(self) -> str:
        """`2 nodes with 8x H100-80GB, 4 nodes with 1x L4` (or `no GPU nodes`)."""
        if not self.groups:
            return "no GPU nodes"
        return ", ".join(f"{g.nodes} node{'s' if g.nodes != 1 else ''} with {g.gpus_per_node}x {g.gpu}" for g in self.groups)


@dataclass(frozen=True)
class PlanOutcome:
    """A plan, or why there is none."""

    workload: WorkloadPlan | None
    explanation: str


def _node_ready(node: Json) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def inventory_from_nodes(nodes: list[Json], catalogue: Catalogue | None = None) -> Inventory:
    """Group Ready, schedulable GPU nodes by catalogue GPU and GPU count."""
    grouped: dict[tuple[str, int], list[Json]] = defaultdict(list)
    for node in nodes:
        if not _node_ready(node):
            continue
        labels = node.get("metadata", {}).get("labels") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        count = int(parse_quantity(str(allocatable.get(GPU_RESOURCE, "0"))) or 0)
        gpu = gpu_from_node_labels(labels, catalogue) if count > 0 else None
        if gpu is not None:
            grouped[(gpu, count)].append(node)
    groups = []
    for (gpu, count), members in sorted(grouped.items()):
        allocs = [(m.get("status") or {}).get("allocatable") or {} for m in members]
        groups.append(GpuNodeGroup(
            gpu=gpu, gpus_per_node=count, nodes=len(members),
            products=frozenset(str(m["metadata"]["labels"][GPU_PRODUCT_LABEL]) for m in members
                               if GPU_PRODUCT_LABEL in (m["metadata"].get("labels") or {})),
            cpu_per_node=min(float(parse_quantity(str(a.get("cpu", "0"))) or 0) for a in allocs),
            memory_per_node=min(float(parse_quantity(str(a.get("memory", "0"))) or 0) for a in allocs),
        ))
    return Inventory(tuple(groups))


def _catalogue_name(name: str, catalogue: Catalogue) -> str:
    try:
        return catalogue.get(name).name
    except CatalogueError:
        return name


def _host_resources(group: GpuNodeGroup, gpus_per_pod: int, weights_per_pod: float) -> tuple[str, str]:
    """CPU and memory a GPU pod requests: enough to stage its weights, within its share of the node."""
    share = gpus_per_pod / group.gpus_per_node
    cpu = max(1, min(8 * gpus_per_pod, math.floor(0.8 * group.cpu_per_node * share)))
    wanted = max(16 * GIB, 1.2 * weights_per_pod + 8 * GIB)
    memory = min(wanted, 0.8 * group.memory_per_node * share) if group.memory_per_node else wanted
    return str(cpu), f"{max(1, math.floor(memory / GIB))}Gi"


def plan_gpu(spec: ModelSpec, inventory: Inventory, catalogue: Catalogue | None = None) -> PlanOutcome:
    """Plan a vLLM version onto the cluster's GPU node groups."""
    catalogue = catalogue or Catalogue()
    placement = spec.placement
    if spec.source.architecture is None:
        return PlanOutcome(None, "the planner needs the model's architecture: add spec.source.architecture "
                                 "(the config.json fields) so the model can be sized before any download")
    arch = Architecture.from_mapping(spec.source.architecture.to_api())
    wanted = [_catalogue_name(a, catalogue) for a in placement.accelerators]
    groups = [g for g in inventory.groups if not wanted or g.gpu in wanted]
    if not groups:
        asked = ", ".join(placement.accelerators) or "any GPU"
        return PlanOutcome(None, f"the cluster has no Ready nodes with {asked}; it has {inventory.describe()}. "
                                 "Add such nodes or change spec.placement.accelerators.")
    slo = spec.slo
    request = PlanRequest(
        tensor_parallel=placement.tensor_parallel,
        pipeline_parallel=placement.pipeline_parallel,
        max_model_len=placement.max_model_len,
        gpu_memory_utilization=placement.gpu_memory_utilization,
        quantization=placement.quantization,
        kv_cache_dtype=placement.kv_cache_dtype,
        preferred_gpus=tuple(wanted),
        slo=Slo(slo.time_to_first_token_seconds, slo.time_per_output_token_seconds, slo.throughput_tokens_per_second)
        if slo else None,
    )
    result = plan(arch, request, catalogue=catalogue, offers=[g.offer() for g in groups])
    chosen = result.chosen
    if chosen is None:
        return PlanOutcome(None, f"{result.explanation} The cluster has {inventory.describe()}. To fix: allow "
                                 "other GPU types in spec.placement.accelerators, lower spec.placement.maxModelLen, "
                                 "set spec.placement.quantization, or relax spec.slo.")
    group = next(g for g in groups if g.gpu == chosen.gpu)
    gpus_per_pod = max(1, chosen.gpus_per_replica // chosen.nodes_per_replica)
    weights_per_pod = chosen.memory.binding.weights * gpus_per_pod
    cpu, memory = _host_resources(group, gpus_per_pod, weights_per_pod)
    resolved = ResolvedPlan.model_validate(chosen.to_status())
    return PlanOutcome(WorkloadPlan(resolved, cpu, memory, tuple(sorted(group.products))), result.explanation)


@lru_cache(maxsize=64)
def _packaged_gguf_architecture(uri: str) -> Architecture | None:
    """The architecture of a GGUF file shipped in an installed package (pkg://package/file.gguf), if readable."""
    from tessera_runtime.fetch.sources import FetchError, package_path, parse_uri

    try:
        path = package_path(parse_uri(uri))  # the very file the pods' fetcher will copy
        return Architecture.from_gguf(path)
    except (FetchError, OSError, ValueError, ArchitectureError) as error:
        log.info("no architecture from %s: %s", uri, error)
        return None


def _cpu_architecture(spec: ModelSpec) -> Architecture | None:
    if spec.source.architecture is not None:
        return Architecture.from_mapping(spec.source.architecture.to_api())
    if spec.source.uri.startswith("pkg://") and spec.source.uri.endswith(".gguf"):
        return _packaged_gguf_architecture(spec.source.uri)
    return None


def plan_cpu(spec: ModelSpec) -> PlanOutcome:
    """Size a CPU (transformers engine) version: spec.placement.cpu when given, else from the architecture."""
    given = spec.placement.cpu
    arch = _cpu_architecture(spec)
    max_len = spec.placement.max_model_len or (arch.max_position_embeddings if arch else None)
    sizing = cpu_sizing(arch, max_len) if arch is not None else None
    cpu = (given.cpu if given else None) or DEFAULT_CPU
    memory = (given.memory if given else None) or (sizing.memory_request if sizing else DEFAULT_CPU_MEMORY)
    load = sizing.estimated_load_seconds if sizing else DEFAULT_CPU_LOAD_SECONDS
    summary = f"CPU: {cpu} CPU, {memory} memory (transformers engine)"
    resolved = ResolvedPlan(
        accelerator="cpu", gpus_per_replica=0, max_model_len=max_len,
        estimated_load_seconds=round(load, 1), summary=summary,
    )
    return PlanOutcome(WorkloadPlan(resolved, cpu, memory), summary)


def plan_version(spec: ModelSpec, inventory: Inventory, catalogue: Catalogue | None = None) -> PlanOutcome:
    """The plan of the spec's version, or the planner's reasons why none fits."""
    try:
        if any(a.lower() == "cpu" for a in spec.placement.accelerators) or spec.engine.name == "transformers":
            return plan_cpu(spec)
        return plan_gpu(spec, inventory, catalogue)
    except (PlanRequestError, ArchitectureError, CatalogueError, ValueError) as error:
        return PlanOutcome(None, f"the spec cannot be planned: {error}")
