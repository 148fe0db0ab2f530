"""Per-GPU memory as vLLM allocates it: weights, peak activation, non-torch memory, CUDA graphs, KV cache.

For every pipeline stage (all tensor-parallel ranks of a stage are alike):

    KV bytes = visible memory x gpu_memory_utilization
               - weights - peak activation - non-torch memory (- CUDA-graph memory in versions that count it)

The peak activation is the larger of two moments of vLLM's profiling run:
  1. the forward pass over `max_num_batched_tokens` dummy tokens (hidden states, attention projections,
     the MLP or expert intermediates of one layer), and
  2. the sampler run on the last token of each of `max_num_seqs` dummy requests: the logits of the whole
     vocabulary are gathered on every rank (tensor parallelism does not shrink them) and top-k/top-p
     sampling holds several copies of them at once.
Both are per GPU: every rank pays its own activation and overheads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .architecture import Architecture
from .catalogue import GIB, GpuSpec
from .engine import EngineProfile
from .parameters import WeightTensor, embedding_tensor, head_tensors, layer_tensors
from .quantization import WeightFormat

# Fused-MoE kernels process at most this many tokens at a time (vLLM's default chunk).
MOE_CHUNK_TOKENS = 32768
# NCCL and custom all-reduce buffers of a tensor-parallel group: measured about 0.41 GiB per rank at TP 2
# on NVLink H100s (vLLM 0.11); larger groups open more channels (an estimate: +50% per doubling).
TP_COMM_GIB_NVLINK = 0.41
TP_COMM_GIB_PCIE = 0.12
PP_COMM_GIB = 0.10
# CUDA-graph estimate (v1-graphs): graphs captured per pipeline piece, and device memory per graph.
CUDAGRAPH_SIZES = 51
CUDAGRAPH_BYTES_PER_GRAPH = 64 * 1024


def pipeline_partition(num_layers: int, pipeline_parallel: int) -> list[int]:
    """Layers per pipeline stage, split as vLLM does: evenly, with the remainder given to the stages
    just before the last (the first holds the embedding, the last the output head)."""
    if pipeline_parallel < 1 or pipeline_parallel > num_layers:
        raise ValueError(f"pipeline parallel {pipeline_parallel} must lie between 1 and {num_layers} layers")
    base, remainder = divmod(num_layers, pipeline_parallel)
    parts = [base] * pipeline_parallel
    for i in range(2, remainder + 2):
        parts[-i] += 1
    return parts


@dataclass(frozen=True)
class StageMemory:
    """Memory of one GPU of one pipeline stage, in bytes."""

    stage: int
    first_layer: int
    layers: int
    budget: float
    weights: float
    activation: float
    forward_peak: float
    sampler_peak: float
    non_torch: float
    cudagraph: float
    kv_bytes_per_token: float
    kv_block_tokens: int

    @property
    def kv_cache(self) -> float:
        """Bytes left for the KV cache (negative when the rest does not fit)."""
        return self.budget - self.weights - self.activation - self.non_torch - self.cudagraph

    @property
    def kv_tokens(self) -> int:
        """Tokens this stage's KV cache holds, in whole blocks (as vLLM allocates it)."""
        if self.kv_cache <= 0 or self.kv_bytes_per_token <= 0:
            return 0
        blocks = math.floor(self.kv_cache / (self.kv_bytes_per_token * self.kv_block_tokens))
        return blocks * self.kv_block_tokens


@dataclass(frozen=True)
class MemoryPlan:
    """Memory of one replica layout: every stage, and the one that binds the KV capacity."""

    stages: tuple[StageMemory, ...]
    max_num_batched_tokens: int
    max_num_seqs: int
    sampler_rows: int

    @property
    def binding(self) -> StageMemory:
        """The stage with the fewest KV tokens (the replica can hold no more than it)."""
        return min(self.stages, key=lambda s: (s.kv_tokens, s.kv_cache))

    @property
    def kv_tokens(self) -> int:
        """KV-cache tokens per replica."""
        return self.binding.kv_tokens


def _tensor_bytes(tensor: WeightTensor, tp: int, fmt: WeightFormat, arch: Architecture) -> float:
    rows, cols = tensor.rank_shape(tp)
    if tensor.kind == "embedding":
        return fmt.embedding_bytes(rows, cols)
    if tensor.kind == "linear":
        if fmt.experts_only:
            return rows * cols * fmt.dtype_bytes
        return fmt.linear_bytes(rows, cols)
    if tensor.kind == "expert":
        if fmt.name == "mxfp4":
            # MXFP4 MoE kernels pad the hidden dimension of expert weights to a multiple of 256.
            padded = math.ceil(arch.hidden_size / 256) * 256
            rows, cols = (padded, cols) if rows == arch.hidden_size else (rows, padded)
        return tensor.count * fmt.linear_bytes(rows, cols)
    return tensor.count * rows * cols * fmt.dtype_bytes


@lru_cache(maxsize=1024)
def _layer_bytes(arch: Architecture, fmt: WeightFormat, tp: int, moe: bool) -> float:
    """Bytes of one decoder layer on one TP rank (layers differ only in dense vs expert MLP)."""
    layer = _first_layer_of_kind(arch, moe)
    return sum(_tensor_bytes(t, tp, fmt, arch) for t in layer_tensors(arch, layer))


def _first_layer_of_kind(arch: Architecture, moe: bool) -> int:
    return next((i for i in range(arch.num_hidden_layers) if arch.layer_is_moe(i) == moe), 0)


def stage_weight_bytes(arch: Architecture, fmt: WeightFormat, tp: int, first_layer: int, layers: int,
                       first: bool, last: bool) -> float:
    """Weight bytes on one TP rank of a pipeline stage (plus the rotary cos/sin cache it builds)."""
    moe_layers = sum(1 for layer in range(first_layer, first_layer + layers) if arch.layer_is_moe(layer))
    total = moe_layers * _layer_bytes(arch, fmt, tp, True) + (layers - moe_layers) * _layer_bytes(arch, fmt, tp, False)
    extra: list[WeightTensor] = []
    if first:
        extra.append(embedding_tensor(arch))
    if last:
        extra += head_tensors(arch, separate_head=not arch.tie_word_embeddings or not first)
    total += sum(_tensor_bytes(t, tp, fmt, arch) for t in extra)
    if arch.is_mla and fmt.is_quantized:
        # MLA keeps de-quantized copies of kv_b_proj's two halves for the absorbed decode path.
        heads = max(1, arch.num_attention_heads // tp)
        width = (arch.qk_nope_head_dim or 128) + (arch.v_head_dim or 128)
        total += layers * (arch.kv_lora_rank or 512) * heads * width * fmt.dtype_bytes
    positions = arch.rope_cache_positions or arch.max_position_embeddings or 0
    total += positions * (arch.rotary_dim or arch.head_dim) * fmt.dtype_bytes
    return total


def forward_peak_bytes(arch: Architecture, tokens: int, tp: int, first_layer: int, layers: int,
                       act: int) -> float:
    """Peak extra bytes of one rank during the profiling forward pass over `tokens` tokens."""
    h = arch.hidden_size
    hidden = tokens * h * act
    q_heads = max(1, arch.num_attention_heads // tp)
    if arch.is_mla:
        rope, nope = arch.qk_rope_head_dim or 64, arch.qk_nope_head_dim or 128
        v_dim, kv_rank = arch.v_head_dim or 128, arch.kv_lora_rank or 512
        per_token = q_heads * (2 * (nope + rope) + (nope + v_dim) + 2 * v_dim) + 2 * (kv_rank + rope)
    else:
        kv_heads = max(1, arch.num_key_value_heads // tp)
        per_token = (2 * q_heads + 2 * kv_heads) * arch.head_dim
    attention = 3 * hidden + tokens * per_token * act
    peak = attention
    gate = 2 if arch.mlp_gated else 1
    for layer in range(first_layer, first_layer + layers):
        if arch.layer_is_moe(layer):
            chunk = min(tokens, MOE_CHUNK_TOKENS)
            width = math.ceil(arch.expert_width / tp)
            experts = chunk * arch.num_experts_per_tok * ((gate + 1) * width + h) * act
            router = tokens * arch.num_experts * act
            shared = tokens * (gate + 1) * math.ceil(arch.shared_expert_intermediate_size / tp) * act
            mlp = 4 * hidden + experts + router + shared
        else:
            width = math.ceil(arch.intermediate_size / tp)
            mlp = 4 * hidden + tokens * (gate + 1) * width * act
        peak = max(peak, mlp)
    return peak


def sampler_peak_bytes(arch: Architecture, profile: EngineProfile, tokens: int, rows: int, act: int) -> float:
    """Peak extra bytes of the dummy sampler run on the last pipeline stage.

    The forward pass's hidden states are still alive; the sampled rows are gathered and replaced by
    random values; the logits cover the whole vocabulary on every TP rank.
    """
    logits = rows * arch.vocab_size * 4 * profile.sampler_logits_copies(act)
    return tokens * arch.hidden_size * act + 2 * rows * arch.hidden_size * act + logits


def non_torch_bytes(gpu: GpuSpec, tp: int, pp: int) -> float:
    """Device memory outside PyTorch: the engine's CUDA-context growth plus communication buffers."""
    total = gpu.non_torch_gib
    if tp > 1:
        base = TP_COMM_GIB_NVLINK if gpu.nvlink else TP_COMM_GIB_PCIE
        total += base * (1 + 0.5 * math.log2(tp / 2))
    if pp > 1:
        total += PP_COMM_GIB
    return total * GIB


def cudagraph_bytes(arch: Architecture, profile: EngineProfile, layers: int, tp: int, act: int,
                    max_num_seqs: int, first_layer: int) -> float:
    """Estimated CUDA-graph memory (only versions that subtract it before sizing the KV cache)."""
    if not profile.counts_cudagraph_memory:
        return 0.0
    capture = min(512, 2 * max_num_seqs)
    graphs = CUDAGRAPH_SIZES * (layers + 1) * 2  # piecewise graphs plus full decode graphs
    return graphs * CUDAGRAPH_BYTES_PER_GRAPH + forward_peak_bytes(arch, capture, tp, first_layer, layers, act)


def memory_plan(arch: Architecture, gpu: GpuSpec, fmt: WeightFormat, kv_dtype_bytes: float, tp: int, pp: int,
                gpu_memory_utilization: float, profile: EngineProfile, max_model_len: int,
                max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
                weights_scale: float = 1.0) -> MemoryPlan:
    """Memory of every pipeline stage of one replica (TP ranks of a stage are identical)."""
    seqs = max_num_seqs or profile.max_num_seqs(gpu)
    tokens = max_num_batched_tokens or min(profile.max_num_batched_tokens(gpu, max_model_len),
                                           seqs * max_model_len)
    rows = min(seqs, tokens)
    act = arch.weight_dtype_bytes
    block = 64 if arch.is_mla else 16
    stages: list[StageMemory] = []
    first_layer = 0
    parts = pipeline_partition(arch.num_hidden_layers, pp)
    for index, layers in enumerate(parts):
        first, last = index == 0, index == len(parts) - 1
        weights = stage_weight_bytes(arch, fmt, tp, first_layer, layers, first, last) * weights_scale
        forward = forward_peak_bytes(arch, tokens, tp, first_layer, layers, act)
        sampler = sampler_peak_bytes(arch, profile, tokens, rows, act) if last else 0.0
        stages.append(StageMemory(
            stage=index, first_layer=first_layer, layers=layers,
            budget=gpu.memory_bytes * gpu_memory_utilization,
            weights=weights,
            activation=max(forward, sampler) + gpu.cublas_workspace_bytes,
            forward_peak=forward, sampler_peak=sampler,
            non_torch=non_torch_bytes(gpu, tp, pp),
            cudagraph=cudagraph_bytes(arch, profile, layers, tp, act, seqs, first_layer),
            kv_bytes_per_token=arch.kv_cache_bytes_per_token(kv_dtype_bytes, tp, layers),
            kv_block_tokens=block,
        ))
        first_layer += layers
    return MemoryPlan(tuple(stages), tokens, seqs, rows)


def model_weight_bytes(arch: Architecture, fmt: WeightFormat) -> float:
    """Bytes of the whole model's weights in `fmt` on one unsplit GPU (no rotary cache)."""
    rotary = (arch.rope_cache_positions or arch.max_position_embeddings or 0) * (arch.rotary_dim or arch.head_dim)
    whole = stage_weight_bytes(arch, fmt, 1, 0, arch.num_hidden_layers, True, True)
    return whole - rotary * fmt.dtype_bytes
