"""Tessera's planner: pure sizing maths that reproduces how vLLM allocates memory on every GPU.

Give it a model's architecture and what you want (`PlanRequest`); it sizes every candidate
(GPU type x weight format x tensor parallel x pipeline parallel) the way vLLM would at start-up and
returns the cheapest that fits the context and meets the SLO, with reasons for every candidate.
No Kubernetes, no torch, no network: data in, data out.
"""

from __future__ import annotations

from .architecture import Architecture, ArchitectureError
from .catalogue import (
    DEFAULT_GPUS,
    Catalogue,
    CatalogueError,
    GpuSpec,
    gpu_from_label_value,
    gpu_from_node_labels,
    load_catalogue,
)
from .cpu import CpuSizing, cpu_sizing, estimate_load_seconds
from .engine import DEFAULT_VLLM_VERSION, EngineProfile, engine_profile
from .known_configs import known_config, known_config_names, known_config_path
from .memory import MemoryPlan, StageMemory, memory_plan, pipeline_partition
from .parameters import ParameterCount, parameter_count
from .planner import plan
from .quantization import QuantizationError, WeightFormat, kv_cache_dtype_bytes, weight_format
from .spec import architecture_from_model, request_from_model, wants_cpu
from .types import CandidatePlan, NodeOffer, PlanRequest, PlanRequestError, PlanResult, Slo

__all__ = [
    "DEFAULT_GPUS",
    "DEFAULT_VLLM_VERSION",
    "Architecture",
    "ArchitectureError",
    "CandidatePlan",
    "Catalogue",
    "CatalogueError",
    "CpuSizing",
    "EngineProfile",
    "GpuSpec",
    "MemoryPlan",
    "NodeOffer",
    "ParameterCount",
    "PlanRequest",
    "PlanRequestError",
    "PlanResult",
    "QuantizationError",
    "Slo",
    "StageMemory",
    "WeightFormat",
    "architecture_from_model",
    "cpu_sizing",
    "engine_profile",
    "estimate_load_seconds",
    "gpu_from_label_value",
    "gpu_from_node_labels",
    "known_config",
    "known_config_names",
    "known_config_path",
    "kv_cache_dtype_bytes",
    "load_catalogue",
    "memory_plan",
    "parameter_count",
    "pipeline_partition",
    "plan",
    "request_from_model",
    "wants_cpu",
    "weight_format",
]
