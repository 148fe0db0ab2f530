"""Properties of the planner that must hold for any architecture it is given."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera_operator.planner import (
    Architecture,
    Catalogue,
    NodeOffer,
    PlanRequest,
    engine_profile,
    memory_plan,
    plan,
    weight_format,
)

GPUS = ["L4", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H200", "B200", "MI300X"]


@st.composite
def gqa_architectures(draw: st.DrawFn) -> Architecture:
    """Dense GQA models from about 0.5B to 70B parameters, with at least 8 KV heads."""
    head_dim = draw(st.sampled_from([64, 128]))
    heads = draw(st.sampled_from([16, 32, 64]))
    kv = draw(st.sampled_from([h for h in (8, 16, 32) if h <= heads]))
    hidden = heads * head_dim
    return Architecture.from_hf_config({
        "model_type": "llama", "hidden_size": hidden, "num_hidden_layers": draw(st.integers(8, 80)),
        "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
        "intermediate_size": hidden * draw(st.sampled_from([3, 4])),
        "vocab_size": draw(st.sampled_from([32000, 128256, 151936])),
        "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
    })


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(arch=gqa_architectures(), gpu=st.sampled_from(GPUS), tp=st.sampled_from([1, 2, 4]),
       pp=st.integers(1, 4), kv_dtype=st.sampled_from([1.0, 2.0]))
def test_more_gpus_never_lower_kv_capacity(arch: Architecture, gpu: str, tp: int, pp: int, kv_dtype: float) -> None:
    spec = Catalogue().get(gpu)
    fmt = weight_format(None, None)
    profile = engine_profile()

    def tokens(t: int, p: int) -> int:
        return memory_plan(arch, spec, fmt, kv_dtype, t, p, 0.9, profile, 8192).kv_tokens

    base = tokens(tp, pp)
    assert tokens(2 * tp, pp) >= base  # doubling tensor parallelism (KV heads still divide)
    assert tokens(tp, pp + 1) >= base  # one more pipeline stage


@FAST
@given(arch=gqa_architectures(), gpu=st.sampled_from(GPUS), tp=st.sampled_from([1, 2, 4, 8]),
       lengths=st.lists(st.integers(256, 131072), min_size=2, max_size=2, unique=True),
       version=st.sampled_from(["0.6.4", "0.11", "0.25"]))
def test_longer_context_never_raises_concurrency(arch: Architecture, gpu: str, tp: int, lengths: list[int],
                                                 version: str) -> None:
    short, long = sorted(lengths)

    def concurrency(length: int) -> float:
        result = plan(arch, PlanRequest(gpu=gpu, tensor_parallel=tp, max_model_len=length, vllm_version=version))
        return result.candidates[0].max_concurrent_sequences

    assert concurrency(long) <= concurrency(short)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=gqa_architectures(), length=st.sampled_from([4096, 32768, 131072]),
       gpus=st.lists(st.sampled_from(GPUS), min_size=1, max_size=3, unique=True),
       per_node=st.sampled_from([1, 2, 4, 8]), quantization=st.sampled_from([None, "auto"]))
def test_chosen_is_cheapest_feasible_and_infeasible_means_all_fail(arch: Architecture, length: int, gpus: list[str],
                                                                  per_node: int, quantization: str | None) -> None:
    offers = [NodeOffer(g, per_node, 1) for g in gpus]
    result = plan(arch, PlanRequest(max_model_len=length, quantization=quantization), offers=offers)
    assert result.candidates
    feasible = [c for c in result.candidates if c.feasible]
    if result.chosen is None:
        assert not feasible
        assert all(c.reasons for c in result.candidates)
        assert "No plan fits" in result.explanation
    else:
        assert result.chosen.feasible and not result.chosen.reasons
        assert result.chosen.cost_per_hour == min(c.cost_per_hour for c in feasible)
        assert result.chosen.kv_cache_tokens >= length
    for c in result.candidates:
        assert c.gpus_per_replica <= per_node  # one node each: nothing may span nodes
        assert c.gpu in gpus
