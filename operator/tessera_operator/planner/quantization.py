"""Weight formats and KV-cache dtypes: how many bytes a weight matrix or a cached token takes.

A `WeightFormat` turns a matrix shape into bytes, including the metadata real kernels keep next to
quantized weights (per-channel or per-block fp8 scales, int4 group scales and zero points, MXFP4 block
scales, GGUF block headers). Embeddings, norms and routers stay in the model dtype except in GGUF files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ggml tensor types: id -> (name, elements per block, bytes per block).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
}

# GGUF file types (general.file_type) and the average bits per weight of their usual tensor mix.
GGUF_FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    30: "IQ4_XS", 32: "BF16",
}
GGUF_BITS_PER_WEIGHT: dict[str, float] = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_1": 6.0, "Q5_0": 5.5,
    "Q5_K_M": 5.69, "Q5_K_S": 5.54, "Q4_1": 5.0, "Q4_0": 4.5, "Q4_K_M": 4.85, "Q4_K_S": 4.58,
    "IQ4_NL": 4.5, "IQ4_XS": 4.25, "Q3_K_L": 4.27, "Q3_K_M": 3.91, "Q3_K_S": 3.5, "Q2_K": 3.0,
}

KV_CACHE_DTYPES: dict[str, float] = {
    "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0, "fp8_inc": 1.0,
    "bfloat16": 2.0, "bf16": 2.0, "float16": 2.0, "fp16": 2.0, "half": 2.0, "float32": 4.0, "fp32": 4.0,
}

# Names accepted for --quantization / placement.quantization (plus any GGUF type, optionally "gguf:" prefixed).
UNQUANTIZED = frozenset({"none", "bf16", "bfloat16", "fp16", "float16", "fp32", "float32"})
QUANTIZATION_CHOICES = ("none", "bf16", "fp16", "fp8", "int8", "awq", "gptq", "int4", "mxfp4", "nvfp4",
                        "bitsandbytes", "gguf", "auto")


class QuantizationError(ValueError):
    """An unknown quantization or KV-cache dtype."""


@dataclass(frozen=True)
class CheckpointQuantization:
    """How the checkpoint on disk is quantized (from config.json's quantization_config or a GGUF file)."""

    method: str
    bits: float
    group_size: int | None = None
    block: tuple[int, int] | None = None
    gguf_type: str | None = None


def checkpoint_quantization_from_config(qc: Any) -> CheckpointQuantization | None:
    """Read a Hugging Face `quantization_config` (awq, gptq, fp8, compressed-tensors, mxfp4, bitsandbytes...)."""
    if not isinstance(qc, Mapping):
        return None
    method = str(qc.get("quant_method") or qc.get("quant_algo") or "").lower()
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin"):
        return CheckpointQuantization(method.split("_")[0], float(qc.get("bits", 4)), int(qc.get("group_size", 128)))
    if method in ("fp8", "fbgemm_fp8"):
        block = qc.get("weight_block_size")
        pair = (int(block[0]), int(block[1])) if isinstance(block, list) and len(block) == 2 else None
        return CheckpointQuantization("fp8", 8.0, block=pair)
    if method == "mxfp4":
        return CheckpointQuantization("mxfp4", 4.25, 32)
    if method == "bitsandbytes":
        return CheckpointQuantization("bitsandbytes", 8.0 if qc.get("load_in_8bit") else 4.0, 64)
    if method == "modelopt":
        algo = str(qc.get("quant_algo", "FP8")).upper()
        return CheckpointQuantization("nvfp4", 4.5, 16) if "FP4" in algo else CheckpointQuantization("fp8", 8.0)
    if method == "compressed-tensors":
        return _compressed_tensors(qc)
    return None


def _compressed_tensors(qc: Mapping[str, Any]) -> CheckpointQuantization | None:
    groups = qc.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        return None
    weights = next(iter(groups.values())).get("weights") or {}
    bits = int(weights.get("num_bits", 8))
    kind = str(weights.get("type", "int"))
    group = weights.get("group_size")
    block = weights.get("block_structure")
    pair = (int(block[0]), int(block[1])) if isinstance(block, list) and len(block) == 2 else None
    if bits == 8:
        return CheckpointQuantization("fp8" if kind == "float" else "int8", 8.0, block=pair)
    if bits == 4 and kind == "float":
        return CheckpointQuantization("nvfp4", 4.5, 16)
    return CheckpointQuantization("int4", float(bits), int(group) if group else 128)


@dataclass(frozen=True)
class WeightFormat:
    """How linear-layer weights are stored in GPU memory for one plan."""

    name: str
    bits: float
    dtype_bytes: int = 2
    group_size: int | None = None
    block: tuple[int, int] | None = None
    experts_only: bool = False
    quantizes_embeddings: bool = False
    fp8_compute: bool = False
    vllm_flag: str | None = None

    @property
    def is_quantized(self) -> bool:
        """Whether linear weights are stored below the model dtype."""
        return self.bits < self.dtype_bytes * 8

    def linear_bytes(self, rows: int, cols: int) -> float:
        """Bytes of a `rows` (input) x `cols` (output) weight matrix, with its quantization metadata."""
        n = rows * cols
        if not self.is_quantized:
            return n * self.dtype_bytes
        if self.name in ("fp8", "int8"):
            if self.block:
                return n + math.ceil(cols / self.block[0]) * math.ceil(rows / self.block[1]) * 4
            return n + cols * 4  # one fp32 scale per output channel
        if self.name in ("awq", "gptq", "int4"):
            group = self.group_size or rows
            meta = math.ceil(rows / group) * cols * 2.5  # fp16 scale + packed 4-bit zero per group
            return n / 2 + meta + (rows * 4 if self.name == "gptq" else 0)
        if self.name == "mxfp4":
            return n / 2 + math.ceil(rows / 32) * cols
        if self.name == "nvfp4":
            return n / 2 + math.ceil(rows / 16) * cols + 4
        if self.name == "bitsandbytes":
            return n * self.bits / 8 + n / 64 * (1 if self.bits < 8 else 4)
        return n * self.bits / 8

    def embedding_bytes(self, rows: int, cols: int) -> float:
        """Bytes of an embedding or output-head matrix (quantized only in GGUF files)."""
        if self.quantizes_embeddings:
            return rows * cols * self.bits / 8
        return rows * cols * self.dtype_bytes


def _unquantized(dtype: str) -> WeightFormat:
    size = 4 if dtype in ("float32", "fp32") else 2
    label = {"float32": "fp32", "fp32": "fp32", "float16": "fp16", "fp16": "fp16"}.get(dtype, "bf16")
    return WeightFormat(label, size * 8.0, size)


def gguf_format(type_name: str) -> WeightFormat:
    """The weight format of a GGUF file type such as Q4_K_M (average bits per weight of its tensor mix)."""
    key = type_name.upper().removeprefix("GGUF:")
    if key not in GGUF_BITS_PER_WEIGHT:
        raise QuantizationError(f"unknown GGUF type {type_name!r}; known: {', '.join(sorted(GGUF_BITS_PER_WEIGHT))}")
    return WeightFormat(f"gguf:{key}", GGUF_BITS_PER_WEIGHT[key], 2, quantizes_embeddings=True, vllm_flag="gguf")


def weight_format(requested: str | None, checkpoint: CheckpointQuantization | None,
                  dtype: str = "bfloat16") -> WeightFormat:
    """Resolve the weight format of a plan: the requested quantization, else what the checkpoint holds."""
    base = _unquantized(dtype)
    if requested is None or requested == "":
        if checkpoint is None:
            return base
        return _from_checkpoint(checkpoint, base.dtype_bytes)
    name = requested.lower()
    if name in UNQUANTIZED:
        if name in ("none",):
            return base
        return _unquantized(name)
    if name == "gguf" or name.startswith("gguf:") or name.upper() in GGUF_BITS_PER_WEIGHT:
        if name == "gguf":
            return gguf_format(checkpoint.gguf_type if checkpoint and checkpoint.gguf_type else "Q4_K_M")
        return gguf_format(name)
    if checkpoint is not None and checkpoint.method == name:
        return _from_checkpoint(checkpoint, base.dtype_bytes)
    if name == "fp8":
        return WeightFormat("fp8", 8.0, base.dtype_bytes, fp8_compute=True, vllm_flag="fp8")
    if name == "int8":
        return WeightFormat("int8", 8.0, base.dtype_bytes, vllm_flag="compressed-tensors")
    if name in ("awq", "gptq", "int4"):
        return WeightFormat(name, 4.0, base.dtype_bytes, group_size=128,
                            vllm_flag=name if name != "int4" else "compressed-tensors")
    if name == "mxfp4":
        return WeightFormat("mxfp4", 4.25, base.dtype_bytes, group_size=32, experts_only=True, vllm_flag="mxfp4")
    if name == "nvfp4":
        return WeightFormat("nvfp4", 4.5, base.dtype_bytes, group_size=16, vllm_flag="modelopt")
    if name == "bitsandbytes":
        return WeightFormat("bitsandbytes", 4.0, base.dtype_bytes, group_size=64, vllm_flag="bitsandbytes")
    raise QuantizationError(f"unknown quantization {requested!r}; choose one of {', '.join(QUANTIZATION_CHOICES)} "
                            "or a GGUF type such as Q4_K_M")


def _from_checkpoint(cp: CheckpointQuantization, dtype_bytes: int) -> WeightFormat:
    if cp.method == "gguf" and cp.gguf_type:
        return gguf_format(cp.gguf_type)
    if cp.method == "fp8":
        return WeightFormat("fp8", 8.0, dtype_bytes, block=cp.block, fp8_compute=True, vllm_flag="fp8")
    if cp.method == "int8":
        return WeightFormat("int8", 8.0, dtype_bytes, vllm_flag="compressed-tensors")
    if cp.method == "mxfp4":
        return WeightFormat("mxfp4", 4.25, dtype_bytes, group_size=32, experts_only=True, vllm_flag="mxfp4")
    if cp.method == "nvfp4":
        return WeightFormat("nvfp4", 4.5, dtype_bytes, group_size=16, vllm_flag="modelopt")
    if cp.method == "bitsandbytes":
        return WeightFormat("bitsandbytes", cp.bits, dtype_bytes, group_size=64, vllm_flag="bitsandbytes")
    return WeightFormat(cp.method, cp.bits, dtype_bytes, group_size=cp.group_size,
                        vllm_flag=cp.method if cp.method in ("awq", "gptq") else "compressed-tensors")


def kv_cache_dtype_bytes(kv_cache_dtype: str | None, model_dtype: str = "bfloat16") -> float:
    """Bytes per cached element: `auto` (or None) follows the model dtype."""
    if kv_cache_dtype is None or kv_cache_dtype == "auto":
        return 4.0 if model_dtype in ("float32", "fp32") else 2.0
    try:
        return KV_CACHE_DTYPES[kv_cache_dtype.lower()]
    except KeyError as exc:
        raise QuantizationError(f"unknown KV-cache dtype {kv_cache_dtype!r}; choose auto, fp8, fp8_e4m3, "
                                "fp8_e5m2, bfloat16 or float16") from exc
