"""Cluster profiles: node pools, the local node and the image -> command table, as data (YAML).

The default profile ships in this package (profiles/default.yaml); `tessera dev cluster up
--profile FILE` takes another. The profile is copied into the cluster directory so the local
node agent reads exactly what the cluster was started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PROFILES_DIR = Path(__file__).parent / "profiles"
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Gpu(_Model):
    """The GPUs of every node in a pool."""

    product: str
    count: int = Field(ge=1)
    memory_mi_b: int = Field(ge=1, alias="memoryMiB")
    taint: bool = True
    """Taint GPU nodes `nvidia.com/gpu=present:NoSchedule`, as GPU clusters commonly do."""


class Taint(_Model):
    """A node taint."""

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodePool(_Model):
    """A group of identical fake nodes, managed by kwok."""

    name: str
    count: int = Field(ge=0)
    zones: list[str] = Field(default_factory=lambda: ["zone-a"])
    cpu: str = "8"
    memory: str = "32Gi"
    max_pods: int = 110
    gpu: Gpu | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)


class RestartBackoff(_Model):
    """Delay before restarting a crashed container: doubles from initial up to max."""

    initial_seconds: float = Field(default=2.0, gt=0)
    max_seconds: float = Field(default=60.0, gt=0)


class LocalNode(_Model):
    """The node whose pods run as real processes (see devcluster.node)."""

    enabled: bool = True
    name: str = "local-cpu-0"
    pod_cidr: str = Field(default="127.10.0.0/16", alias="podCIDR")
    labels: dict[str, str] = Field(default_factory=lambda: {"tessera.dev/local-node": "true"})
    taints: list[Taint] = Field(
        default_factory=lambda: [Taint(key="tessera.dev/local-node", value="true", effect="NoSchedule")]
    )
    max_pods: int = 110
    restart_backoff: RestartBackoff = Field(default_factory=RestartBackoff)


class ImageMapping(_Model):
    """How one image runs on the local node: `entrypoint` stands for ENTRYPOINT, `args` for CMD."""

    image: str
    entrypoint: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)


class Profile(_Model):
    """A local cluster's shape."""

    api_version: str = "tessera.dev/v1alpha1"
    kind: Literal["DevClusterProfile"] = "DevClusterProfile"
    node_pools: list[NodePool] = Field(default_factory=list)
    local_node: LocalNode = Field(default_factory=LocalNode)
    images: list[ImageMapping] = Field(default_factory=list)

    def image_mapping(self, image: str) -> ImageMapping | None:
        """The mapping for an image reference, ignoring its tag/digest and Docker Hub's default prefix."""
        wanted = normalise_image(image)
        for mapping in self.images:
            if normalise_image(mapping.image) == wanted:
                return mapping
        return None


def normalise_image(image: str) -> str:
    """Strip the tag/digest and Docker Hub's implicit registry from an image reference."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def load_profile(path: Path | None = None) -> Profile:
    """Read a profile file (default: the packaged profiles/default.yaml)."""
    source = path or PROFILES_DIR / "default.yaml"
    return Profile.model_validate(yaml.safe_load(source.read_text()))


def dump_profile(profile: Profile, path: Path) -> None:
    """Write a profile as YAML (camelCase keys)."""
    path.write_text(yaml.safe_dump(profile.model_dump(by_alias=True, mode="json"), sort_keys=False))


def fake_nodes(profile: Profile) -> list[dict[str, Any]]:
    """The Node objects of every pool, ready to create (kwok manages them by annotation)."""
    nodes: list[dict[str, Any]] = []
    for pool in profile.node_pools:
        for index in range(pool.count):
            nodes.append(_fake_node(pool, index))
    return nodes


def _fake_node(pool: NodePool, index: int) -> dict[str, Any]:
    name = f"{pool.name}-{index}"
    zone = pool.zones[index % len(pool.zones)]
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": f"fake-{pool.name}",
        "topology.kubernetes.io/zone": zone,
        "tessera.dev/node-pool": pool.name,
        "type": "kwok",
    }
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": str(pool.max_pods),
        "ephemeral-storage": "1Ti",
    }
    taints = [taint.model_dump() for taint in pool.taints]
    if pool.gpu is not None:
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": pool.gpu.product,
            "nvidia.com/gpu.count": str(pool.gpu.count),
            "nvidia.com/gpu.memory": str(pool.gpu.memory_mi_b),
        }
        resources[GPU_RESOURCE] = str(pool.gpu.count)
        if pool.gpu.taint:
            taints.append(dict(GPU_TAINT))
    labels |= pool.labels
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1]},
        },
        "spec": {"taints": taints},
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }
