"""Planner inputs from a Model object given as a plain mapping (camelCase as stored, or snake_case).

The operator and `tessera plan -f` both turn `spec.source.architecture`, `spec.placement` and `spec.slo`
into an Architecture and a PlanRequest here, so they cannot disagree about what a manifest asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .architecture import Architecture, ArchitectureError, snake_case
from .types import PlanRequest, Slo

_PLACEMENT_FIELDS = ("tensor_parallel", "pipeline_parallel", "max_model_len", "quantization", "kv_cache_dtype",
                     "gpu_memory_utilization")


def _snake(value: Any) -> dict[str, Any]:
    return {snake_case(str(k)): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def wants_cpu(spec: Mapping[str, Any]) -> bool:
    """Whether a Model spec asks for CPU placement (accelerators [cpu], or the transformers engine alone)."""
    s = _snake(spec)
    accelerators = [str(a) for a in _snake(s.get("placement")).get("accelerators") or []]
    engine = _snake(s.get("engine")).get("name")
    return accelerators == ["cpu"] or (engine == "transformers" and not accelerators)


def architecture_from_model(model: Mapping[str, Any]) -> Architecture:
    """The inline architecture of a Model (`spec.source.architecture`)."""
    spec = _snake(model.get("spec", model))
    arch = _snake(spec.get("source")).get("architecture")
    if not isinstance(arch, Mapping):
        raise ArchitectureError("spec.source.architecture is missing; give the architecture inline")
    name = _snake(model.get("metadata")).get("name")
    return Architecture.from_mapping(arch, name=str(name) if name else None)


def request_from_model(model: Mapping[str, Any], **overrides: Any) -> PlanRequest:
    """A PlanRequest from a Model's placement and SLO; keyword overrides that are not None win."""
    spec = _snake(model.get("spec", model))
    placement = _snake(spec.get("placement"))
    values: dict[str, Any] = {k: placement[k] for k in _PLACEMENT_FIELDS if placement.get(k) is not None}
    accelerators = [str(a) for a in placement.get("accelerators") or [] if str(a) != "cpu"]
    if accelerators:
        values["preferred_gpus"] = tuple(accelerators)
        if len(accelerators) == 1:
            values["gpu"] = accelerators[0]
    slo = _snake(spec.get("slo"))
    if any(slo.get(k) is not None for k in ("time_to_first_token_seconds", "time_per_output_token_seconds",
                                            "throughput_tokens_per_second")):
        values["slo"] = Slo(slo.get("time_to_first_token_seconds"), slo.get("time_per_output_token_seconds"),
                            slo.get("throughput_tokens_per_second"))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return PlanRequest(**values)
