"""Architectures from weight files: GGUF metadata and safetensors headers, read without loading weights.

Both readers touch only the metadata at the start of a file (the tensor table of a GGUF file, the JSON
header of a safetensors file), so planning a 100 GB checkpoint reads a few megabytes at most.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from .architecture import Architecture, ArchitectureError
from .quantization import GGML_TYPES, GGUF_FILE_TYPES, CheckpointQuantization

_GGUF_MAGIC = b"GGUF"
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# GGUF architecture names that differ from config.json model_type.
_GGUF_MODEL_TYPES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "deepseek2": "deepseek_v3",
                     "gemma3": "gemma3_text", "gpt-oss": "gpt_oss"}


class _Reader:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = self.handle.read(size)
        if len(data) != size:
            raise ArchitectureError("GGUF file ends inside its metadata")
        return struct.unpack(fmt, data)[0]

    def string(self) -> str:
        length = int(self.scalar("<Q"))
        if length > 1 << 24:
            raise ArchitectureError("GGUF string too long: the file is damaged or not GGUF")
        return self.handle.read(length).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = int(self.scalar("<I")), int(self.scalar("<Q"))
            if item_kind in _SCALARS and count > 64:
                # Long numeric arrays (token scores, types) are skipped: only their length matters here.
                self.handle.seek(count * struct.calcsize(_SCALARS[item_kind]), 1)
                return _Skipped(count)
            items = [self.value(item_kind) for _ in range(count)]
            return items if item_kind != _STRING or count <= 64 else _Skipped(count)
        raise ArchitectureError(f"unknown GGUF value type {kind}")


class _Skipped:
    """A long array whose items were not kept."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


def read_gguf_metadata(path: Path) -> tuple[dict[str, Any], list[tuple[str, list[int], int]]]:
    """The key/value metadata and the tensor table (name, shape, ggml type) of a GGUF file."""
    with path.open("rb") as handle:
        if handle.read(4) != _GGUF_MAGIC:
            raise ArchitectureError(f"{path.name} is not a GGUF file")
        reader = _Reader(handle)
        version = int(reader.scalar("<I"))
        if version < 2:
            raise ArchitectureError(f"GGUF version {version} is too old (2 or later is supported)")
        tensor_count, kv_count = int(reader.scalar("<Q")), int(reader.scalar("<Q"))
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string()
            metadata[key] = reader.value(int(reader.scalar("<I")))
        tensors = []
        for _ in range(tensor_count):
            name = reader.string()
            dims = [int(reader.scalar("<Q")) for _ in range(int(reader.scalar("<I")))]
            kind = int(reader.scalar("<I"))
            reader.scalar("<Q")  # offset in the data section
            tensors.append((name, dims, kind))
    return metadata, tensors


def gguf_tensor_bytes(dims: Sequence[int], kind: int) -> int:
    """Bytes of one GGUF tensor of ggml type `kind`."""
    if kind not in GGML_TYPES:
        raise ArchitectureError(f"unknown ggml tensor type {kind}")
    _, block, size = GGML_TYPES[kind]
    return math.prod(dims) // block * size


def architecture_from_gguf(path: Path) -> Architecture:
    """An Architecture from a GGUF file's metadata; its real weight bytes come from the tensor table."""
    meta, tensors = read_gguf_metadata(path)
    arch = str(meta.get("general.architecture", "llama"))

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, list):  # per-layer values: the planner needs the largest
            return max(value)
        return value

    hidden = get("embedding_length")
    layers = get("block_count")
    heads = get("attention.head_count")
    if hidden is None or layers is None or heads is None:
        raise ArchitectureError(f"{path.name}: GGUF metadata lacks {arch}.embedding_length/block_count/head_count")
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = get("vocab_size") or (len(tokens) if tokens is not None else None)
    if vocab is None:
        embedding = next((dims for name, dims, _ in tensors if name == "token_embd.weight"), None)
        vocab = embedding[1] if embedding else None
    if vocab is None:
        raise ArchitectureError(f"{path.name}: cannot tell the vocabulary size")
    names = {name for name, _, _ in tensors}
    total = sum(gguf_tensor_bytes(dims, kind) for _, dims, kind in tensors)
    params = sum(math.prod(dims) for _, dims, _ in tensors)
    file_type = GGUF_FILE_TYPES.get(int(meta.get("general.file_type", -1)), None)
    bits = total * 8 / params if params else 16.0
    config = {
        "model_type": _GGUF_MODEL_TYPES.get(arch, arch),
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": get("attention.head_count_kv", heads),
        "head_dim": get("attention.key_length", int(hidden) // int(heads)),
        "intermediate_size": get("feed_forward_length") or get("expert_feed_forward_length"),
        "vocab_size": vocab, "max_position_embeddings": get("context_length"),
        "tie_word_embeddings": "output.weight" not in names,
        "num_local_experts": get("expert_count", 0), "num_experts_per_tok": get("expert_used_count", 0),
        "moe_intermediate_size": get("expert_feed_forward_length"),
        "sliding_window": get("attention.sliding_window"), "torch_dtype": "bfloat16",
    }
    result = Architecture.from_hf_config(config, name=str(meta.get("general.name") or path.stem))
    quant = CheckpointQuantization("gguf", round(bits, 3), gguf_type=file_type or _type_from_name(path.name))
    return replace_quant(result, quant, total, f"GGUF tensor table of {path.name}")


def _type_from_name(filename: str) -> str:
    match = re.search(r"(Q\d_K_[SML]|Q\d_K|Q\d_\d|IQ\d_\w+|F16|BF16|F32)", filename.upper())
    return match.group(1) if match else "Q4_K_M"


def replace_quant(arch: Architecture, quant: CheckpointQuantization, total: int, source: str) -> Architecture:
    """A copy with the checkpoint's quantization and real byte size."""
    return replace(arch, quantization=quant, checkpoint_bytes=total, weights_source=source)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file (tensor dtypes, shapes and byte ranges)."""
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ArchitectureError(f"{path.name} is not a safetensors file")
        length = struct.unpack("<Q", raw)[0]
        if length > 100 * 1024 * 1024:
            raise ArchitectureError(f"{path.name}: header of {length} bytes is implausible")
        try:
            header = json.loads(handle.read(length))
        except ValueError as exc:
            raise ArchitectureError(f"{path.name}: header is not JSON") from exc
    if not isinstance(header, dict):
        raise ArchitectureError(f"{path.name}: header is not a JSON object")
    return header


def architecture_from_safetensors(paths: Sequence[Path], config: Mapping[str, Any] | None) -> Architecture:
    """An Architecture whose byte size is read from safetensors headers; the structure comes from `config`
    when given, else from tensor names and shapes (Llama-style naming)."""
    if not paths:
        raise ArchitectureError("no safetensors files given")
    tensors: dict[str, dict[str, Any]] = {}
    for path in paths:
        tensors.update({k: v for k, v in read_safetensors_header(path).items() if k != "__metadata__"})
    total = sum(int(v["data_offsets"][1]) - int(v["data_offsets"][0]) for v in tensors.values())
    source = f"safetensors headers ({len(paths)} file{'s' if len(paths) > 1 else ''})"
    if config is not None:
        return Architecture.from_hf_config(config).with_checkpoint_bytes(total, source)
    return _infer_from_tensors(tensors).with_checkpoint_bytes(total, source)


def _shape(tensors: Mapping[str, Mapping[str, Any]], suffix: str) -> list[int] | None:
    for name, info in tensors.items():
        if name.endswith(suffix):
            return [int(d) for d in info["shape"]]
    return None


def _infer_from_tensors(tensors: Mapping[str, Mapping[str, Any]]) -> Architecture:
    embed = _shape(tensors, "embed_tokens.weight")
    q = _shape(tensors, "layers.0.self_attn.q_proj.weight")
    k = _shape(tensors, "layers.0.self_attn.k_proj.weight")
    gate = _shape(tensors, "layers.0.mlp.gate_proj.weight") or _shape(tensors, "layers.0.mlp.up_proj.weight")
    if not (embed and q and k and gate):
        raise ArchitectureError("cannot infer the architecture from these tensor names; pass config.json too")
    layers = 1 + max(int(m.group(1)) for name in tensors if (m := re.search(r"layers\.(\d+)\.", name)))
    q_norm = _shape(tensors, "layers.0.self_attn.q_norm.weight")
    head_dim = q_norm[0] if q_norm else (128 if q[0] % 128 == 0 and embed[1] >= 2048 else 64)
    dtype = str(next(iter(tensors.values())).get("dtype", "BF16")).lower()
    arch = Architecture.from_hf_config({
        "model_type": "qwen3" if q_norm else "llama",
        "hidden_size": embed[1], "num_hidden_layers": layers, "num_attention_heads": q[0] // head_dim,
        "num_key_value_heads": k[0] // head_dim, "head_dim": head_dim, "intermediate_size": gate[0],
        "vocab_size": embed[0], "tie_word_embeddings": not any(n.startswith("lm_head") for n in tensors),
        "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}.get(dtype, "bfloat16"),
    })
    return replace(arch, notes=(*arch.notes, f"structure inferred from tensor shapes (head_dim {head_dim} assumed)"))
