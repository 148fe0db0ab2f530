"""The GPU catalogue: what each accelerator offers, as data the platform team can override.

Visible memory is what the CUDA runtime reports as total device memory (what vLLM multiplies by
gpu_memory_utilization), not the marketing size. Prices are indicative on-demand USD per GPU-hour;
override them with your own rates (`tessera plan --catalogue FILE`, or `load_catalogue`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

GIB = 1024**3


class CatalogueError(ValueError):
    """A catalogue file or entry is malformed."""


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator type."""

    name: str
    memory_gib: float
    """Total device memory the runtime reports (GiB)."""
    bandwidth_tbs: float
    """HBM/GDDR bandwidth, TB/s."""
    bf16_tflops: float
    """Dense bf16 tensor throughput, TFLOP/s."""
    fp8_tflops: float
    """Dense fp8 tensor throughput, TFLOP/s (0 where the GPU has no fp8 tensor cores)."""
    price_per_hour: float
    """USD per GPU-hour."""
    interconnect_gbs: float = 25.0
    """GPU-to-GPU bandwidth inside a node, GB/s per direction (NVLink, Infinity Fabric or PCIe)."""
    nvlink: bool = False
    """Whether GPUs in a node talk over a switched fabric (NVLink/NVSwitch, Infinity Fabric) rather than PCIe."""
    compute_capability: str = "9.0"
    """CUDA compute capability (gfx942 for MI300X is given as 9.4 for sorting only)."""
    non_torch_gib: float = 0.13
    """Device memory the engine process uses outside PyTorch on one GPU (CUDA context growth, kernels)."""
    vendor: str = "nvidia"
    labels: tuple[str, ...] = ()
    """Extra node-label values that mean this GPU (besides the built-in mapping)."""

    @property
    def memory_bytes(self) -> float:
        """Visible memory in bytes."""
        return self.memory_gib * GIB

    @property
    def is_a100(self) -> bool:
        """vLLM keeps smaller batching defaults on A100s (their throughput regressed with larger ones)."""
        return "A100" in self.name.upper()

    @property
    def cublas_workspace_bytes(self) -> int:
        """The cuBLAS workspace PyTorch allocates with the first matmul: 32 MiB on Hopper and newer, else 8 MiB."""
        major = float(self.compute_capability.split(".")[0]) if self.vendor == "nvidia" else 9.0
        return 32 * 1024**2 if major >= 9 else 8 * 1024**2


DEFAULT_GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("L4", 22.03, 0.30, 121.0, 242.0, 0.70, 32.0, False, "8.9", 0.05),
    GpuSpec("L40S", 44.53, 0.864, 362.0, 733.0, 1.90, 32.0, False, "8.9", 0.08),
    GpuSpec("A100-40GB", 39.39, 1.555, 312.0, 0.0, 2.50, 300.0, True, "8.0", 0.10),
    GpuSpec("A100-80GB", 79.15, 2.039, 312.0, 0.0, 3.40, 300.0, True, "8.0", 0.10),
    GpuSpec("H100-80GB", 79.19, 3.35, 989.0, 1979.0, 4.50, 450.0, True, "9.0", 0.13),
    GpuSpec("H200", 139.81, 4.80, 989.0, 1979.0, 5.50, 450.0, True, "9.0", 0.13),
    GpuSpec("B200", 178.35, 8.00, 2250.0, 4500.0, 8.00, 900.0, True, "10.0", 0.13),
    GpuSpec("MI300X", 191.98, 5.30, 1307.0, 2615.0, 4.00, 448.0, True, "9.4", 0.13, vendor="amd"),
)


@dataclass(frozen=True)
class Catalogue:
    """The GPUs the planner may choose from, by name."""

    gpus: tuple[GpuSpec, ...] = DEFAULT_GPUS

    def names(self) -> list[str]:
        """Catalogue names in catalogue order."""
        return [g.name for g in self.gpus]

    def get(self, name: str) -> GpuSpec:
        """Look up a GPU by catalogue name (case-insensitive) or by a node-label value."""
        for gpu in self.gpus:
            if gpu.name.lower() == name.lower():
                return gpu
        mapped = gpu_from_label_value(name, self)
        if mapped is not None:
            return self.get(mapped)
        raise CatalogueError(f"unknown GPU {name!r}; the catalogue has {', '.join(self.names())}")

    def with_overrides(self, data: Mapping[str, Any]) -> Catalogue:
        """A copy with entries changed or added: `{"gpus": {NAME: {field: value}}}` or `{NAME: {...}}`.

        Named fields of an existing GPU are replaced; a new name needs memoryGiB, bandwidthTBs,
        bf16TFLOPs and pricePerHour. Keys may be camelCase or snake_case.
        """
        entries = data.get("gpus", data)
        if isinstance(entries, list):
            entries = {str(e.get("name")): e for e in entries if isinstance(e, Mapping)}
        if not isinstance(entries, Mapping):
            raise CatalogueError("a catalogue override is a mapping of GPU name to fields")
        gpus = {g.name: g for g in self.gpus}
        for name, raw in entries.items():
            if not isinstance(raw, Mapping):
                raise CatalogueError(f"catalogue entry {name!r} must be a mapping")
            values = _normalise_fields(raw)
            values.pop("name", None)
            if name in gpus:
                gpus[name] = replace(gpus[name], **values)
            else:
                missing = {"memory_gib", "bandwidth_tbs", "bf16_tflops", "price_per_hour"} - values.keys()
                if missing:
                    raise CatalogueError(f"new catalogue entry {name!r} needs {', '.join(sorted(missing))}")
                values.setdefault("fp8_tflops", 0.0)
                gpus[name] = GpuSpec(name=name, **values)
        return Catalogue(tuple(gpus.values()))


def _normalise_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name: f for f in fields(GpuSpec)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        flat = re.sub(r"[^a-z0-9]", "", str(key).lower())
        name = next((k for k in known if k.replace("_", "") == flat), None)
        if name is None:
            raise CatalogueError(f"unknown catalogue field {key!r}")
        if name == "labels":
            value = tuple(str(v) for v in value)
        elif name in ("nvlink",):
            value = bool(value)
        elif name not in ("compute_capability", "vendor"):
            try:
                value = float(value)
            except (TypeError, ValueError) as exc:
                raise CatalogueError(f"catalogue field {key!r} must be a number") from exc
            if value < 0:
                raise CatalogueError(f"catalogue field {key!r} must not be negative")
        out[name] = value
    return out


def load_catalogue(source: str | Path | Mapping[str, Any] | None = None) -> Catalogue:
    """The default catalogue, overridden by a YAML/JSON file or a mapping when one is given."""
    base = Catalogue()
    if source is None:
        return base
    if isinstance(source, Mapping):
        return base.with_overrides(source)
    text = Path(source).read_text(encoding="utf-8")
    try:
        import yaml

        data = yaml.safe_load(text)
    except ImportError:  # pragma: no cover - pyyaml is a dependency; JSON still works without it
        data = json.loads(text)
    except Exception as exc:
        raise CatalogueError(f"{source}: not valid YAML or JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise CatalogueError(f"{source}: a catalogue file holds a mapping")
    return base.with_overrides(data)


# ---- node labels -------------------------------------------------------------------------------------

PRODUCT_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator", "amd.com/gpu.product-name",
                  "karpenter.k8s.aws/instance-gpu-name", "node.kubernetes.io/gpu-product")


def gpu_from_label_value(value: str, catalogue: Catalogue | None = None) -> str | None:
    """Map one label value (`NVIDIA-H100-80GB-HBM3`, `nvidia-l4`, `AMD_Instinct_MI300X`...) to a catalogue name.

    MIG slices (`...-MIG-1g.10gb`) map to nothing: the planner sizes whole GPUs.
    """
    cat = catalogue or Catalogue()
    for gpu in cat.gpus:
        if value in gpu.labels or value.lower() == gpu.name.lower():
            return gpu.name
    up = value.upper().replace("_", "-")
    if "MIG" in up.split("-"):
        return None
    tokens = set(re.split(r"[-\s.]+", up))
    rules: list[tuple[bool, str]] = [
        ("H200" in up, "H200"),
        ("B200" in up, "B200"),
        ("H100" in up and "NVL" not in tokens, "H100-80GB"),
        ("A100" in up and ("80GB" in up or "80G" in tokens), "A100-80GB"),
        ("A100" in up, "A100-40GB"),
        ("L40S" in tokens, "L40S"),
        ("L4" in tokens, "L4"),
        ("MI300X" in up, "MI300X"),
    ]
    names = set(cat.names())
    for matched, name in rules:
        if matched and name in names:
            return name
    return None


def gpu_from_node_labels(labels: Mapping[str, str], catalogue: Catalogue | None = None) -> str | None:
    """The catalogue name of a node's GPU, from `nvidia.com/gpu.product`, GKE's accelerator label and
    similar labels; None when the node has no GPU the catalogue knows."""
    for key in PRODUCT_LABELS:
        value = labels.get(key)
        if value:
            name = gpu_from_label_value(value, catalogue)
            if name is not None:
                return name
    return None
