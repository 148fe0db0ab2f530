"""Enumerate GPU x weight format x TP x PP, size each on vLLM's memory model, and choose.

The chosen plan is the cheapest feasible one (cost per hour of the replicas the throughput target needs,
then cost per million output tokens, then the preferred GPU order). A request nothing satisfies gets an
explanation naming what failed and the nearest options that work.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from .architecture import Architecture
from .catalogue import GIB, Catalogue, CatalogueError, GpuSpec
from .cpu import LOAD_BANDWIDTH_BYTES_PER_S, estimate_load_seconds
from .engine import EngineProfile, EngineVersionError, engine_profile
from .memory import memory_plan, model_weight_bytes
from .performance import (
    COMPUTE_EFFICIENCY,
    MEMORY_EFFICIENCY,
    Workload,
    cost_per_million_tokens,
    estimate_speed,
)
from .quantization import QuantizationError, WeightFormat, kv_cache_dtype_bytes, weight_format
from .types import CandidatePlan, NodeOffer, PlanRequest, PlanRequestError, PlanResult

DEFAULT_GPUS_PER_NODE = 8
DEFAULT_NODES = 4
MAX_PIPELINE_PARALLEL = 16
LOW_KV_SEQUENCES = 4.0
"""Below this many full-length sequences a feasible plan is flagged as leaving almost no KV cache."""


@dataclass(frozen=True)
class _Context:
    arch: Architecture
    request: PlanRequest
    profile: EngineProfile
    max_model_len: int
    utilization: float
    kv_dtype: str
    kv_bytes: float
    workload: Workload


def _gib(value: float) -> str:
    return f"{value / GIB:.2f}"


def _max_model_len(arch: Architecture, request: PlanRequest) -> int:
    limit = arch.max_position_embeddings
    if request.max_model_len is None:
        return limit or 4096
    if limit is not None and request.max_model_len > limit:
        raise PlanRequestError(f"max_model_len {request.max_model_len:,} exceeds the model's limit of {limit:,} "
                               "positions (max_position_embeddings)")
    return request.max_model_len


def _offers(cat: Catalogue, request: PlanRequest, offers: Sequence[NodeOffer] | None) -> list[tuple[GpuSpec, NodeOffer]]:
    if offers is None:
        chosen = [cat.get(request.gpu)] if request.gpu else list(cat.gpus)
        return [(g, NodeOffer(g.name, DEFAULT_GPUS_PER_NODE, DEFAULT_NODES)) for g in chosen]
    result = []
    for offer in offers:
        gpu = cat.get(offer.gpu)
        if request.gpu is None or gpu.name == cat.get(request.gpu).name:
            result.append((gpu, offer))
    return result


def _formats(arch: Architecture, request: PlanRequest) -> list[WeightFormat]:
    dtype = arch.torch_dtype
    if request.quantization != "auto":
        return [weight_format(request.quantization, arch.quantization, dtype)]
    formats = [weight_format(None, arch.quantization, dtype)]
    if arch.quantization is None:
        formats.append(weight_format("fp8", None, dtype))
    return formats


def _valid_tp(arch: Architecture, tp: int) -> bool:
    if arch.num_attention_heads % tp:
        return False
    kv = arch.num_key_value_heads
    return arch.is_mla or (kv % tp == 0 if kv >= tp else tp % kv == 0)


def _layouts(arch: Architecture, request: PlanRequest, offer: NodeOffer) -> Iterable[tuple[int, int]]:
    per_node = offer.gpus_per_node
    tps = [request.tensor_parallel] if request.tensor_parallel else \
        [t for t in range(1, per_node + 1) if _valid_tp(arch, t)]
    largest = max(tps) if tps else 1
    for tp in tps:
        if request.pipeline_parallel or request.tensor_parallel:
            # Fixing TP fixes the replica's GPU count unless PP is given too (vLLM's PP default is 1).
            yield tp, request.pipeline_parallel or 1
            continue
        yield tp, 1
        if tp == largest:  # span stages only once tensor parallelism is used up inside the node
            top = min(arch.num_hidden_layers, MAX_PIPELINE_PARALLEL, max(1, offer.total_gpus // tp))
            for pp in range(2, top + 1):
                yield tp, pp


def _structural_reasons(arch: Architecture, fmt: WeightFormat, gpu: GpuSpec, offer: NodeOffer,
                        tp: int, pp: int) -> list[str]:
    reasons = []
    heads, kv = arch.num_attention_heads, arch.num_key_value_heads
    if heads % tp:
        reasons.append(f"{heads} attention heads are not divisible by tensor parallel {tp}")
    if not arch.is_mla and kv >= tp and kv % tp:
        reasons.append(f"{kv} KV heads are not divisible by tensor parallel {tp}")
    if not arch.is_mla and kv < tp and tp % kv:
        reasons.append(f"tensor parallel {tp} is not a multiple of the {kv} KV heads, so they cannot be replicated evenly")
    widths = [("MLP width", arch.intermediate_size)] if not arch.is_moe or arch.first_k_dense_replace else []
    if arch.is_moe:
        widths.append(("expert width", arch.expert_width))
    for label, width in widths:
        if width % tp:
            reasons.append(f"{label} {width} is not divisible by tensor parallel {tp}")
        elif tp > 1 and fmt.group_size and fmt.name in ("awq", "gptq", "int4") and (width // tp) % fmt.group_size:
            reasons.append(f"{label} per GPU ({width // tp}) is not a multiple of the {fmt.name} group size "
                           f"{fmt.group_size}")
        elif fmt.block and (width // tp) % fmt.block[1]:
            reasons.append(f"{label} per GPU ({width // tp}) is not a multiple of the fp8 block {fmt.block[1]}")
    if pp > arch.num_hidden_layers:
        reasons.append(f"pipeline parallel {pp} exceeds the {arch.num_hidden_layers} layers")
    if tp > offer.gpus_per_node:
        reasons.append(f"tensor parallel {tp} would span nodes of {offer.gpus_per_node} {gpu.name} GPUs; "
                       "Tessera keeps tensor parallelism inside a node")
    if tp * pp > offer.total_gpus:
        reasons.append(f"needs {tp * pp} {gpu.name} GPUs; {offer.total_gpus} available")
    return reasons


def _evaluate(ctx: _Context, gpu: GpuSpec, offer: NodeOffer, fmt: WeightFormat, tp: int, pp: int) -> CandidatePlan:
    arch, request = ctx.arch, ctx.request
    reasons = _structural_reasons(arch, fmt, gpu, offer, tp, pp)
    notes: list[str] = []
    scale, source = 1.0, "architecture"
    native = weight_format(None, arch.quantization, arch.torch_dtype)
    if arch.checkpoint_bytes and fmt == native:
        computed = model_weight_bytes(arch, fmt)
        if computed > 0 and 0.5 < arch.checkpoint_bytes / computed < 2.0:
            scale, source = arch.checkpoint_bytes / computed, arch.weights_source
    memory = memory_plan(arch, gpu, fmt, ctx.kv_bytes, tp, min(pp, arch.num_hidden_layers), ctx.utilization,
                         ctx.profile, ctx.max_model_len, request.max_num_batched_tokens, request.max_num_seqs,
                         weights_scale=scale)
    binding = memory.binding
    tokens = memory.kv_tokens
    concurrency = tokens / ctx.max_model_len
    if binding.kv_cache <= 0:
        graphs = f" + CUDA graphs {_gib(binding.cudagraph)}" if binding.cudagraph else ""
        reasons.append(
            f"weights {_gib(binding.weights)} GiB + activation {_gib(binding.activation)} GiB + non-torch "
            f"{_gib(binding.non_torch)} GiB{graphs} exceed the {_gib(binding.budget)} GiB budget per GPU "
            f"({ctx.utilization:g} x {gpu.memory_gib:g} GiB)")
    elif tokens < ctx.max_model_len:
        reasons.append(f"the KV cache holds {tokens:,} tokens per replica ({_gib(binding.kv_cache)} GiB per GPU), "
                       f"less than one {ctx.max_model_len:,}-token sequence")
    elif concurrency < request.min_concurrency:
        reasons.append(f"the KV cache holds {concurrency:.2f} sequences of {ctx.max_model_len:,} tokens; "
                       f"{request.min_concurrency:g} required")
    elif concurrency < LOW_KV_SEQUENCES:
        notes.append(f"almost no KV cache: only {concurrency:.2f} sequences of {ctx.max_model_len:,} tokens fit")
    speed = estimate_speed(arch, gpu, fmt, memory, tp, math.ceil(tp * pp / offer.gpus_per_node), ctx.workload,
                           ctx.max_model_len, request.slo.tpot_p95_seconds if request.slo else None)
    replicas = 1
    if request.slo:
        slo = request.slo
        if slo.ttft_p95_seconds is not None and speed.prefill_seconds > slo.ttft_p95_seconds:
            reasons.append(f"prefill of a {ctx.workload.prompt_tokens:,}-token prompt takes "
                           f"{speed.prefill_seconds:.3f} s, over the {slo.ttft_p95_seconds:g} s TTFT target")
        if slo.tpot_p95_seconds is not None and speed.time_per_output_token > slo.tpot_p95_seconds:
            reasons.append(f"one decode step takes {speed.time_per_output_token * 1000:.1f} ms even for one "
                           f"sequence, over the {slo.tpot_p95_seconds * 1000:g} ms TPOT target")
        if slo.throughput_tokens_per_second:
            replicas = max(1, math.ceil(slo.throughput_tokens_per_second / max(speed.output_tokens_per_second, 1e-9)))
    if fmt.name in ("awq", "gptq", "int4") and (arch.quantization is None or arch.quantization.method != fmt.name):
        notes.append(f"assumes a {fmt.name.upper()} int4 checkpoint of this model")
    if fmt.name == "fp8" and arch.quantization is None:
        notes.append("fp8: vLLM quantizes the weights on load (--quantization fp8)")
    parts = [s.layers for s in memory.stages]
    if len(set(parts)) > 1:
        notes.append(f"layers split unevenly across pipeline stages: {parts}")
    nodes = math.ceil(tp * pp / offer.gpus_per_node)
    if nodes > 1:
        notes.append(f"spans {nodes} nodes: one LeaderWorkerSet group of {nodes} pods")
    cost = gpu.price_per_hour * tp * pp
    replica_bytes = sum(s.weights for s in memory.stages) * tp
    return CandidatePlan(
        gpu=gpu.name, tensor_parallel=tp, pipeline_parallel=pp, gpus_per_replica=tp * pp, nodes_per_replica=nodes,
        quantization=fmt.name, vllm_quantization=None if fmt == native else fmt.vllm_flag, kv_cache_dtype=ctx.kv_dtype,
        max_model_len=ctx.max_model_len, gpu_memory_utilization=ctx.utilization, memory=memory,
        kv_cache_tokens=tokens, max_concurrent_sequences=concurrency,
        decode_tokens_per_second=speed.decode_tokens_per_second,
        time_per_output_token_seconds=speed.time_per_output_token, decode_batch=speed.decode_batch,
        prefill_seconds=speed.prefill_seconds, cost_per_hour=cost,
        cost_per_million_output_tokens=cost_per_million_tokens(cost, speed.output_tokens_per_second),
        replicas_for_throughput=replicas, estimated_load_seconds=estimate_load_seconds(replica_bytes),
        feasible=not reasons, reasons=tuple(reasons), notes=tuple(notes), weights_source=source,
    )


def _rank(candidates: list[CandidatePlan], preferred: Sequence[str]) -> list[CandidatePlan]:
    order = {name.lower(): i for i, name in enumerate(preferred)}

    def key(c: CandidatePlan) -> tuple[float, ...]:
        if c.feasible:
            return (0, c.replica_cost_per_hour, c.cost_per_million_output_tokens, order.get(c.gpu.lower(), len(order)),
                    c.gpus_per_replica, c.pipeline_parallel, -c.kv_cache_tokens)
        fit = c.memory.binding.kv_cache / c.memory.binding.budget
        return (1, len(c.reasons), -fit, c.cost_per_hour)

    return sorted(candidates, key=key)


def _context(arch: Architecture, request: PlanRequest) -> _Context:
    try:
        profile = engine_profile(request.vllm_version, request.sampler)
        if request.weight_dtype:
            arch = replace(arch, torch_dtype=request.weight_dtype)
        elif arch.torch_dtype in ("float32", "fp32") and arch.quantization is None:
            arch = replace(arch, torch_dtype="bfloat16")  # vLLM serves float32 checkpoints in 16 bits by default
        kv_bytes = kv_cache_dtype_bytes(request.kv_cache_dtype, arch.torch_dtype)
    except (EngineVersionError, QuantizationError) as exc:
        raise PlanRequestError(str(exc)) from exc
    utilization = request.gpu_memory_utilization or profile.default_gpu_memory_utilization
    return _Context(arch, request, profile, _max_model_len(arch, request), utilization,
                    request.kv_cache_dtype or "auto", kv_bytes,
                    Workload(request.prompt_tokens, request.output_tokens))


def _candidates(ctx: _Context, cat: Catalogue, offers: Sequence[NodeOffer] | None) -> list[CandidatePlan]:
    try:
        formats = _formats(ctx.arch, ctx.request)
        pairs = _offers(cat, ctx.request, offers)
    except (QuantizationError, CatalogueError) as exc:
        raise PlanRequestError(str(exc)) from exc
    return [_evaluate(ctx, gpu, offer, fmt, tp, pp)
            for gpu, offer in pairs for fmt in formats for tp, pp in _layouts(ctx.arch, ctx.request, offer)]


def _nearest(ctx: _Context, cat: Catalogue, offers: Sequence[NodeOffer] | None, best: CandidatePlan | None,
             min_sequences: float = 0.0, limit: int = 4) -> tuple[list[CandidatePlan], list[str]]:
    """Feasible plans close to the request, least change first: a free layout on the same GPU, other GPUs,
    then other precisions (fp8 quantized on load; an int4 checkpoint)."""
    request = ctx.request
    free = replace(request, tensor_parallel=None, pipeline_parallel=None)
    relaxations = [
        free,
        replace(free, gpu=None),
        replace(free, quantization="fp8"),
        replace(free, gpu=None, quantization="fp8"),
        replace(free, quantization="awq"),
    ]
    found: dict[str, CandidatePlan] = {}
    for relaxed in relaxations:
        if relaxed.quantization != request.quantization and ctx.arch.quantization is not None:
            continue  # a quantized checkpoint is what it is
        try:
            ranked = _rank(_candidates(replace(ctx, request=relaxed), cat, offers), request.preferred_gpus)
        except PlanRequestError:
            continue
        pick = next((c for c in ranked if c.feasible and c.max_concurrent_sequences >= min_sequences
                     and c.layout() not in found), None)
        if pick is not None:
            found[pick.layout()] = pick
        if len(found) >= limit:
            break
    hints = []
    if best is not None and 0 < best.kv_cache_tokens < ctx.max_model_len:
        hints.append(f"max_model_len of at most {best.kv_cache_tokens:,} tokens fits on {best.layout()}")
    return list(found.values()), hints


def plan(architecture: Architecture, request: PlanRequest | None = None, catalogue: Catalogue | None = None,
         offers: Sequence[NodeOffer] | None = None) -> PlanResult:
    """Plan how to serve `architecture`: every candidate, the chosen one (or None) and an explanation.

    `offers` restricts candidates to the node shapes a cluster has; None means every catalogue GPU in
    nodes of 8, a replica spanning up to 4 nodes.
    """
    request = request or PlanRequest()
    request.validate()
    cat = catalogue or Catalogue()
    ctx = _context(architecture, request)
    ranked = _rank(_candidates(ctx, cat, offers), request.preferred_gpus)
    chosen = next((c for c in ranked if c.feasible), None)
    alternatives: list[CandidatePlan] = []
    if chosen is not None:
        fitting = sum(1 for c in ranked if c.feasible)
        slo = " and meets the SLO" if request.slo else ""
        explanation = (f"Chose {chosen.summary()}. {fitting} of {len(ranked)} candidates fit; the cheapest that "
                       f"fits {ctx.max_model_len:,} tokens{slo} wins.")
        if chosen.notes:
            explanation += " Note: " + "; ".join(chosen.notes) + "."
        if chosen.max_concurrent_sequences < LOW_KV_SEQUENCES:
            alternatives, _ = _nearest(ctx, cat, offers, None, min_sequences=LOW_KV_SEQUENCES)
            if alternatives:
                explanation += " For more KV cache: " + " | ".join(_describe(c) for c in alternatives) + "."
    elif not ranked:
        explanation = "No candidate to evaluate: the cluster offers none of the requested GPU."
        alternatives, _ = _nearest(ctx, cat, None, None)
        explanation += _alternatives_text(alternatives, [])
    else:
        best = ranked[0]
        alternatives, hints = _nearest(ctx, cat, offers, best)
        explanation = (f"No plan fits. Closest: {best.layout()}: " + "; ".join(best.reasons) + "."
                       + _alternatives_text(alternatives, hints))
    return PlanResult(chosen, ranked, explanation, model=ctx.arch.summary(),
                      assumptions=_assumptions(ctx, offers), alternatives=alternatives)


def _describe(c: CandidatePlan) -> str:
    caveats = [n for n in c.notes if n.startswith(("assumes", "fp8:"))]
    return c.summary() + (f" ({'; '.join(caveats)})" if caveats else "")


def _alternatives_text(alternatives: list[CandidatePlan], hints: list[str]) -> str:
    lines = [_describe(c) for c in alternatives] + hints
    if not lines:
        return " Nothing in the catalogue fits; consider a quantized checkpoint or a shorter context."
    return " What fits instead: " + " | ".join(lines) + "."


def _assumptions(ctx: _Context, offers: Sequence[NodeOffer] | None) -> dict[str, object]:
    return {
        "vllmVersion": ctx.profile.version,
        "vllmEra": ctx.profile.era,
        "sampler": ctx.profile.sampler,
        "gpuMemoryUtilization": ctx.utilization,
        "countsCudaGraphMemory": ctx.profile.counts_cudagraph_memory,
        "maxModelLen": ctx.max_model_len,
        "kvCacheDtype": ctx.kv_dtype,
        "workload": {"promptTokens": ctx.workload.prompt_tokens, "outputTokens": ctx.workload.output_tokens},
        "memoryBandwidthEfficiency": MEMORY_EFFICIENCY,
        "computeEfficiency": COMPUTE_EFFICIENCY,
        "loadBandwidthGiBPerSecond": LOAD_BANDWIDTH_BYTES_PER_S / GIB,
        "offers": "the whole catalogue, 8 GPUs per node, up to 4 nodes per replica" if offers is None
        else [{"gpu": o.gpu, "gpusPerNode": o.gpus_per_node, "nodes": o.nodes, "freeGpus": o.free_gpus}
              for o in offers],
    }
