"""Roofline estimates of decode speed, prefill time and cost.

A decode step reads every weight of a rank once (for MoE, only the experts the batch touches) plus the
KV cache of every running sequence; it takes the longer of that read at a fraction of peak bandwidth
and its arithmetic at a fraction of peak tensor throughput, plus two all-reduces per layer under tensor
parallelism. Prefill is compute-bound. These are estimates for ranking plans, not measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .architecture import Architecture
from .catalogue import GpuSpec
from .memory import MemoryPlan, StageMemory
from .parameters import embedding_tensor, layer_tensors
from .quantization import WeightFormat

MEMORY_EFFICIENCY = 0.8
"""Fraction of peak memory bandwidth decode kernels reach."""
COMPUTE_EFFICIENCY = 0.5
"""Fraction of peak dense tensor throughput reached (model FLOPs utilisation)."""
ALLREDUCE_LATENCY_S = {True: 8e-6, False: 25e-6}
"""Fixed cost of one all-reduce: NVLink-class fabric vs PCIe."""
PIPELINE_HOP_S = 30e-6
"""Fixed cost of handing activations to the next pipeline stage."""
INTER_NODE_GBS = 25.0
"""Bandwidth between nodes (200 Gb/s class networking) for pipeline hand-offs across nodes."""


@dataclass(frozen=True)
class Workload:
    """The typical request used for speed and cost estimates."""

    prompt_tokens: int = 1024
    output_tokens: int = 256


@dataclass(frozen=True)
class SpeedEstimate:
    """Roofline figures of one replica."""

    decode_batch: int
    time_per_output_token: float
    decode_tokens_per_second: float
    single_stream_tokens_per_second: float
    prefill_seconds: float
    output_tokens_per_second: float
    """Sustained output tokens/s with prefill interleaved (what cost per token divides by)."""


@lru_cache(maxsize=4096)
def _layer_flops_and_experts(arch: Architecture, layer: int, tp: int) -> tuple[float, float]:
    """(matmul parameters one token multiplies on a rank, expert-weight share of the layer's parameters)."""
    dense = expert = 0.0
    for tensor in layer_tensors(arch, layer):
        rows, cols = tensor.rank_shape(tp)
        if tensor.kind == "expert":
            expert += tensor.count * rows * cols
        elif tensor.kind == "linear":
            dense += rows * cols
    active_experts = expert * arch.num_experts_per_tok / max(1, arch.num_experts)
    total = dense + expert
    return dense + active_experts, (expert / total if total else 0.0)


def _touched_expert_fraction(arch: Architecture, batch: int) -> float:
    if not arch.is_moe:
        return 1.0
    k, n = arch.num_experts_per_tok, arch.num_experts
    return 1.0 - (1.0 - k / n) ** batch


def _peak_flops(gpu: GpuSpec, fmt: WeightFormat) -> float:
    tflops = gpu.fp8_tflops if fmt.fp8_compute and gpu.fp8_tflops > 0 else gpu.bf16_tflops
    return tflops * 1e12 * COMPUTE_EFFICIENCY


def _stage_params(arch: Architecture, stage: StageMemory, tp: int, last: bool) -> tuple[float, float]:
    active = 0.0
    expert_share = 0.0
    for layer in range(stage.first_layer, stage.first_layer + stage.layers):
        params, share = _layer_flops_and_experts(arch, layer, tp)
        active += params
        expert_share += share / stage.layers
    if last:
        rows, cols = embedding_tensor(arch).rank_shape(tp)
        active += rows * cols
    return active, expert_share


def _allreduce_seconds(arch: Architecture, gpu: GpuSpec, tp: int, tokens: int, layers: int) -> float:
    if tp <= 1:
        return 0.0
    payload = tokens * arch.hidden_size * arch.weight_dtype_bytes * 2 * (tp - 1) / tp
    per_call = ALLREDUCE_LATENCY_S[gpu.nvlink] + payload / (gpu.interconnect_gbs * 1e9)
    return 2 * layers * per_call


def _hop_seconds(arch: Architecture, gpu: GpuSpec, tokens: int, pp: int, nodes: int) -> float:
    if pp <= 1:
        return 0.0
    bandwidth = (INTER_NODE_GBS if nodes > 1 else gpu.interconnect_gbs) * 1e9
    return (pp - 1) * (PIPELINE_HOP_S + tokens * arch.hidden_size * arch.weight_dtype_bytes / bandwidth)


def decode_step_seconds(arch: Architecture, gpu: GpuSpec, fmt: WeightFormat, memory: MemoryPlan, tp: int,
                        nodes: int, batch: int, context: int) -> float:
    """Seconds of one decode step for `batch` sequences of `context` tokens (one token each)."""
    bandwidth = gpu.bandwidth_tbs * 1e12 * MEMORY_EFFICIENCY
    flops_peak = _peak_flops(gpu, fmt)
    touched = _touched_expert_fraction(arch, batch)
    total = 0.0
    for index, stage in enumerate(memory.stages):
        active, expert_share = _stage_params(arch, stage, tp, index == len(memory.stages) - 1)
        weights_read = stage.weights * (1 - expert_share * (1 - touched))
        kv_read = batch * context * stage.kv_bytes_per_token
        heads = max(1, arch.num_attention_heads // tp)
        attention = 4 * batch * context * heads * arch.head_dim * stage.layers
        flops = 2 * batch * active + attention
        total += max((weights_read + kv_read) / bandwidth, flops / flops_peak)
        total += _allreduce_seconds(arch, gpu, tp, batch, stage.layers)
    return total + _hop_seconds(arch, gpu, batch, len(memory.stages), nodes)


def prefill_seconds(arch: Architecture, gpu: GpuSpec, fmt: WeightFormat, memory: MemoryPlan, tp: int,
                    nodes: int, prompt_tokens: int) -> float:
    """Seconds to prefill one prompt of `prompt_tokens` tokens on an idle replica."""
    bandwidth = gpu.bandwidth_tbs * 1e12 * MEMORY_EFFICIENCY
    flops_peak = _peak_flops(gpu, fmt)
    total = 0.0
    for index, stage in enumerate(memory.stages):
        active, _ = _stage_params(arch, stage, tp, index == len(memory.stages) - 1)
        heads = max(1, arch.num_attention_heads // tp)
        attention = 2 * prompt_tokens * prompt_tokens * heads * arch.head_dim * stage.layers
        flops = 2 * prompt_tokens * active + attention
        total += max(flops / flops_peak, stage.weights / bandwidth)
        total += _allreduce_seconds(arch, gpu, tp, prompt_tokens, stage.layers)
    return total + _hop_seconds(arch, gpu, prompt_tokens, len(memory.stages), nodes)


def estimate_speed(arch: Architecture, gpu: GpuSpec, fmt: WeightFormat, memory: MemoryPlan, tp: int, nodes: int,
                   workload: Workload, max_model_len: int, tpot_target: float | None = None) -> SpeedEstimate:
    """Decode batch, time per output token, throughput and prefill time of one replica.

    The batch is as large as the KV cache and max_num_seqs allow for the typical request, or the largest
    that keeps the time per output token within `tpot_target`.
    """
    prompt = max(1, min(workload.prompt_tokens, max_model_len - 1))
    output = max(1, min(workload.output_tokens, max_model_len - prompt))
    context = prompt + output // 2
    capacity = max(1, min(memory.max_num_seqs, memory.kv_tokens // (prompt + output)))

    def step(b: int) -> float:
        return decode_step_seconds(arch, gpu, fmt, memory, tp, nodes, b, context)

    batch = capacity
    if tpot_target is not None and step(capacity) > tpot_target:
        low, high = 1, capacity
        while low < high:  # largest batch whose step fits the target (step time grows with the batch)
            mid = (low + high + 1) // 2
            if step(mid) <= tpot_target:
                low = mid
            else:
                high = mid - 1
        batch = low
    tpot = step(batch)
    prefill = prefill_seconds(arch, gpu, fmt, memory, tp, nodes, prompt)
    cycle = output * tpot + batch * prefill  # chunked prefill shares the GPU with decode
    return SpeedEstimate(
        decode_batch=batch,
        time_per_output_token=tpot,
        decode_tokens_per_second=batch / tpot,
        single_stream_tokens_per_second=1.0 / step(1),
        prefill_seconds=prefill,
        output_tokens_per_second=batch * output / cycle,
    )


def cost_per_million_tokens(cost_per_hour: float, tokens_per_second: float) -> float:
    """USD per million output tokens at a sustained rate."""
    if tokens_per_second <= 0:
        return math.inf
    return cost_per_hour / (tokens_per_second * 3600) * 1e6
