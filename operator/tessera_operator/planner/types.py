"""The planner's inputs and outputs: request, cluster offers, candidate plans and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catalogue import GIB
from .memory import MemoryPlan


class PlanRequestError(ValueError):
    """The request cannot be planned as given (unknown GPU, impossible value...)."""


@dataclass(frozen=True)
class Slo:
    """Service-level objectives a plan must meet (p95 latencies, sustained output throughput)."""

    ttft_p95_seconds: float | None = None
    tpot_p95_seconds: float | None = None
    throughput_tokens_per_second: float | None = None


@dataclass(frozen=True)
class PlanRequest:
    """What the user fixed; everything left as None is chosen by the planner."""

    gpu: str | None = None
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    quantization: str | None = None
    """None: what the checkpoint holds; "auto": also consider fp8 of an unquantized checkpoint."""
    kv_cache_dtype: str | None = None
    weight_dtype: str | None = None
    """Override of the dtype unquantized weights are served in (bfloat16, float16, float32)."""
    slo: Slo | None = None
    preferred_gpus: tuple[str, ...] = ()
    vllm_version: str | None = None
    sampler: str | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    prompt_tokens: int = 1024
    output_tokens: int = 256
    min_concurrency: float = 1.0
    """Sequences of max_model_len the KV cache must hold at once."""

    def validate(self) -> None:
        """Raise PlanRequestError for values no plan could satisfy."""
        for name in ("tensor_parallel", "pipeline_parallel", "max_model_len", "max_num_batched_tokens",
                     "max_num_seqs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PlanRequestError(f"{name} must be at least 1, got {value}")
        util = self.gpu_memory_utilization
        if util is not None and not 0 < util <= 1:
            raise PlanRequestError(f"gpu_memory_utilization must lie in (0, 1], got {util}")
        if self.prompt_tokens < 1 or self.output_tokens < 1:
            raise PlanRequestError("prompt_tokens and output_tokens must be positive")
        if self.min_concurrency <= 0:
            raise PlanRequestError("min_concurrency must be positive")
        if self.slo:
            for value in (self.slo.ttft_p95_seconds, self.slo.tpot_p95_seconds,
                          self.slo.throughput_tokens_per_second):
                if value is not None and value <= 0:
                    raise PlanRequestError("SLO targets must be positive")


@dataclass(frozen=True)
class NodeOffer:
    """A node shape a cluster has: GPU type, GPUs per node, number of such nodes, and free GPUs."""

    gpu: str
    gpus_per_node: int = 8
    nodes: int = 1
    free_gpus: int | None = None
    """GPUs of this type free across those nodes (None: all of them)."""

    @property
    def total_gpus(self) -> int:
        """GPUs a replica may draw on."""
        whole = self.gpus_per_node * self.nodes
        return whole if self.free_gpus is None else min(whole, self.free_gpus)


def _gib(value: float) -> float:
    return round(value / GIB, 2)


@dataclass(frozen=True)
class CandidatePlan:
    """One way to serve the model: GPU type x weight format x TP x PP, with its figures per GPU."""

    gpu: str
    tensor_parallel: int
    pipeline_parallel: int
    gpus_per_replica: int
    nodes_per_replica: int
    quantization: str
    vllm_quantization: str | None
    kv_cache_dtype: str
    max_model_len: int
    gpu_memory_utilization: float
    memory: MemoryPlan
    kv_cache_tokens: int
    max_concurrent_sequences: float
    decode_tokens_per_second: float
    time_per_output_token_seconds: float
    decode_batch: int
    prefill_seconds: float
    cost_per_hour: float
    cost_per_million_output_tokens: float
    replicas_for_throughput: int
    estimated_load_seconds: float
    feasible: bool
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    weights_source: str = "architecture"

    @property
    def replica_cost_per_hour(self) -> float:
        """Cost of the replicas the throughput target needs (one without a target)."""
        return self.cost_per_hour * self.replicas_for_throughput

    def layout(self) -> str:
        """Short description: `2x A100-80GB (TP2 PP1, bf16)`."""
        return (f"{self.gpus_per_replica}x {self.gpu} (TP{self.tensor_parallel} PP{self.pipeline_parallel}, "
                f"{self.quantization})")

    def summary(self) -> str:
        """One line a person can read."""
        b = self.memory.binding
        return (f"{self.layout()}: per GPU weights {_gib(b.weights)} GiB, activation {_gib(b.activation)} GiB, "
                f"KV cache {_gib(b.kv_cache)} GiB = {self.kv_cache_tokens:,} tokens "
                f"({self.max_concurrent_sequences:.2f} x {self.max_model_len:,}-token sequences), "
                f"${self.cost_per_hour:.2f}/h")

    def vllm_args(self) -> list[str]:
        """The vLLM flags this plan sets (the ones a Model's engine.args may not)."""
        args = [f"--tensor-parallel-size={self.tensor_parallel}", f"--pipeline-parallel-size={self.pipeline_parallel}",
                f"--max-model-len={self.max_model_len}", f"--gpu-memory-utilization={self.gpu_memory_utilization:g}"]
        if self.vllm_quantization:
            args.append(f"--quantization={self.vllm_quantization}")
        if self.kv_cache_dtype != "auto":
            args.append(f"--kv-cache-dtype={self.kv_cache_dtype}")
        return args

    def to_status(self) -> dict[str, Any]:
        """The fields of a Model's `status.plan` (ResolvedPlan), camelCase."""
        return {
            "accelerator": self.gpu, "gpusPerReplica": self.gpus_per_replica,
            "tensorParallel": self.tensor_parallel, "pipelineParallel": self.pipeline_parallel,
            "nodesPerReplica": self.nodes_per_replica, "maxModelLen": self.max_model_len,
            "kvCacheTokens": self.kv_cache_tokens,
            "maxConcurrentSequences": round(self.max_concurrent_sequences, 2),
            # The name vLLM knows (fp8, awq, ...) when it differs from the stored dtype (bf16).
            "quantization": self.vllm_quantization or self.quantization, "kvCacheDtype": self.kv_cache_dtype,
            "gpuMemoryUtilization": self.gpu_memory_utilization, "costPerHour": round(self.cost_per_hour, 2),
            "estimatedLoadSeconds": round(self.estimated_load_seconds, 1), "summary": self.summary()[:2048],
        }

    def to_dict(self) -> dict[str, Any]:
        """camelCase JSON; per-GPU figures are those of the stage that binds the KV capacity."""
        b = self.memory.binding
        return {
            "gpu": self.gpu,
            "tensorParallel": self.tensor_parallel,
            "pipelineParallel": self.pipeline_parallel,
            "gpusPerReplica": self.gpus_per_replica,
            "nodesPerReplica": self.nodes_per_replica,
            "quantization": self.quantization,
            "vllmQuantization": self.vllm_quantization,
            "kvCacheDtype": self.kv_cache_dtype,
            "maxModelLen": self.max_model_len,
            "gpuMemoryUtilization": self.gpu_memory_utilization,
            "budgetGiBPerRank": _gib(b.budget),
            "weightsGiBPerRank": _gib(b.weights),
            "activationGiBPerRank": _gib(b.activation),
            "nonTorchGiBPerRank": _gib(b.non_torch),
            "cudaGraphGiBPerRank": _gib(b.cudagraph),
            "kvCacheGiBPerRank": _gib(b.kv_cache),
            "kvCacheTokens": self.kv_cache_tokens,
            "maxConcurrentSequences": round(self.max_concurrent_sequences, 2),
            "maxNumSeqs": self.memory.max_num_seqs,
            "maxNumBatchedTokens": self.memory.max_num_batched_tokens,
            "decodeBatch": self.decode_batch,
            "decodeTokensPerSecond": round(self.decode_tokens_per_second, 1),
            "timePerOutputTokenSeconds": round(self.time_per_output_token_seconds, 5),
            "prefillSeconds": round(self.prefill_seconds, 4),
            "costPerHour": round(self.cost_per_hour, 2),
            "costPerMillionOutputTokens": (round(self.cost_per_million_output_tokens, 3)
                                           if self.cost_per_million_output_tokens != float("inf") else None),
            "replicasForThroughput": self.replicas_for_throughput,
            "estimatedLoadSeconds": round(self.estimated_load_seconds, 1),
            "weightsSource": self.weights_source,
            "feasible": self.feasible,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "stages": [
                {"stage": s.stage, "layers": s.layers, "weightsGiB": _gib(s.weights),
                 "activationGiB": _gib(s.activation), "forwardPeakGiB": _gib(s.forward_peak),
                 "samplerPeakGiB": _gib(s.sampler_peak), "nonTorchGiB": _gib(s.non_torch),
                 "cudaGraphGiB": _gib(s.cudagraph), "kvCacheGiB": _gib(s.kv_cache), "kvCacheTokens": s.kv_tokens}
                for s in self.memory.stages
            ],
        }


@dataclass(frozen=True)
class PlanResult:
    """The chosen plan (None when nothing fits), every candidate considered, and why."""

    chosen: CandidatePlan | None
    candidates: list[CandidatePlan]
    explanation: str
    model: dict[str, Any] = field(default_factory=dict)
    assumptions: dict[str, Any] = field(default_factory=dict)
    alternatives: list[CandidatePlan] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        """Whether a plan was chosen."""
        return self.chosen is not None

    def to_dict(self) -> dict[str, Any]:
        """camelCase JSON: chosen (or null), candidates, explanation, model and assumptions."""
        return {
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "alternatives": [c.to_dict() for c in self.alternatives],
            "explanation": self.explanation,
            "model": self.model,
            "assumptions": self.assumptions,
        }
