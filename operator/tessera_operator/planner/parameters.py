"""The weight tensors of a model, with how tensor parallelism splits each one.

Every layer is described as a list of `WeightTensor`s (shape, kind, split rule), so parameter counts,
per-rank bytes under any TP size and any weight format all come from one description of the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from .architecture import Architecture

# vLLM pads the vocabulary of its parallel embedding and output head to a multiple of 64.
VOCAB_PADDING = 64

Split = Literal["column", "row", "none", "vocab"]
Kind = Literal["embedding", "linear", "expert", "plain"]


@dataclass(frozen=True)
class WeightTensor:
    """One weight matrix (or a stack of `count` expert matrices): `rows` inputs x `cols` outputs.

    `unit` groups output columns into heads: a column split never gives a rank less than one unit,
    which is how KV heads are replicated when TP exceeds their number.
    """

    name: str
    kind: Kind
    rows: int
    cols: int
    split: Split
    count: int = 1
    unit: int = 1

    @property
    def elements(self) -> int:
        """Parameters in the full (unsplit) tensor."""
        return self.count * self.rows * self.cols

    def rank_shape(self, tensor_parallel: int) -> tuple[int, int]:
        """(rows, cols) one tensor-parallel rank holds."""
        t = tensor_parallel
        if self.split == "column":
            units = self.cols // self.unit
            return self.rows, max(1, math.ceil(units / t) if units % t else units // t) * self.unit
        if self.split == "row":
            return math.ceil(self.rows / t), self.cols
        if self.split == "vocab":
            padded = math.ceil(self.rows / VOCAB_PADDING) * VOCAB_PADDING
            return math.ceil(padded / t), self.cols
        return self.rows, self.cols


def _attention(arch: Architecture) -> list[WeightTensor]:
    h, hd, heads, kv = arch.hidden_size, arch.head_dim, arch.num_attention_heads, arch.num_key_value_heads
    if arch.is_mla:
        rope, nope = arch.qk_rope_head_dim or 64, arch.qk_nope_head_dim or 128
        v_dim, kv_rank = arch.v_head_dim or 128, arch.kv_lora_rank or 512
        tensors: list[WeightTensor] = []
        if arch.q_lora_rank:
            tensors += [WeightTensor("q_a_proj", "linear", h, arch.q_lora_rank, "none"),
                        WeightTensor("q_a_layernorm", "plain", 1, arch.q_lora_rank, "none"),
                        WeightTensor("q_b_proj", "linear", arch.q_lora_rank, heads * (nope + rope), "column",
                                     unit=nope + rope)]
        else:
            tensors.append(WeightTensor("q_proj", "linear", h, heads * (nope + rope), "column", unit=nope + rope))
        tensors += [
            WeightTensor("kv_a_proj_with_mqa", "linear", h, kv_rank + rope, "none"),
            WeightTensor("kv_a_layernorm", "plain", 1, kv_rank, "none"),
            WeightTensor("kv_b_proj", "linear", kv_rank, heads * (nope + v_dim), "column", unit=nope + v_dim),
            WeightTensor("o_proj", "linear", heads * v_dim, h, "row"),
        ]
        return tensors
    tensors = [
        WeightTensor("q_proj", "linear", h, heads * hd, "column", unit=hd),
        WeightTensor("k_proj", "linear", h, kv * hd, "column", unit=hd),
        WeightTensor("v_proj", "linear", h, kv * hd, "column", unit=hd),
        WeightTensor("o_proj", "linear", heads * hd, h, "row"),
    ]
    if arch.qkv_bias:
        tensors += [WeightTensor("q_bias", "plain", 1, heads * hd, "column", unit=hd),
                    WeightTensor("kv_bias", "plain", 2, kv * hd, "column", unit=hd)]
    if arch.o_bias:
        tensors.append(WeightTensor("o_bias", "plain", 1, h, "none"))
    if arch.qk_norm:
        tensors.append(WeightTensor("qk_norm", "plain", 2, hd, "none"))
    return tensors


def _dense_mlp(arch: Architecture, width: int, prefix: str = "mlp") -> list[WeightTensor]:
    h = arch.hidden_size
    up = 2 * width if arch.mlp_gated else width
    return [WeightTensor(f"{prefix}.gate_up_proj", "linear", h, up, "column", unit=up // width),
            WeightTensor(f"{prefix}.down_proj", "linear", width, h, "row")]


def _moe(arch: Architecture) -> list[WeightTensor]:
    h, experts, width = arch.hidden_size, arch.num_experts, arch.expert_width
    up = 2 * width if arch.mlp_gated else width
    tensors = [
        WeightTensor("router", "plain", h, experts, "none"),
        WeightTensor("experts.gate_up_proj", "expert", h, up, "column", count=experts, unit=up // width),
        WeightTensor("experts.down_proj", "expert", width, h, "row", count=experts),
    ]
    if arch.expert_bias:
        tensors += [WeightTensor("experts.gate_up_bias", "plain", 1, up, "column", count=experts),
                    WeightTensor("experts.down_bias", "plain", 1, h, "none", count=experts)]
    if arch.shared_expert_intermediate_size:
        tensors += _dense_mlp(arch, arch.shared_expert_intermediate_size, "shared_experts")
    if arch.shared_expert_gate:
        tensors.append(WeightTensor("shared_expert_gate", "plain", h, 1, "none"))
    return tensors


def layer_tensors(arch: Architecture, layer: int) -> list[WeightTensor]:
    """The weights of decoder layer `layer` (0-based)."""
    tensors = _attention(arch)
    tensors += _moe(arch) if arch.layer_is_moe(layer) else _dense_mlp(arch, arch.intermediate_size)
    tensors.append(WeightTensor("norms", "plain", arch.norms_per_layer, arch.hidden_size, "none"))
    return tensors


def embedding_tensor(arch: Architecture) -> WeightTensor:
    """The input embedding (split over the vocabulary)."""
    return WeightTensor("embed_tokens", "embedding", arch.vocab_size, arch.hidden_size, "vocab")


def head_tensors(arch: Architecture, separate_head: bool) -> list[WeightTensor]:
    """Final norm and output head of the last stage; the head is absent when tied to a local embedding."""
    tensors = [WeightTensor("final_norm", "plain", 1, arch.hidden_size, "none")]
    if separate_head:
        tensors.append(WeightTensor("lm_head", "embedding", arch.vocab_size, arch.hidden_size, "vocab"))
    return tensors


@dataclass(frozen=True)
class ParameterCount:
    """Parameters of the model, by part."""

    embedding: int
    lm_head: int
    attention: int
    dense_mlp: int
    experts: int
    other: int
    active_per_token: int

    @property
    def total(self) -> int:
        """All parameters (a tied head counted once)."""
        return self.embedding + self.lm_head + self.attention + self.dense_mlp + self.experts + self.other


def parameter_count(arch: Architecture) -> ParameterCount:
    """Count parameters from the architecture: embedding, attention, MLP or experts, norms, head."""
    attention = dense = experts = other = 0
    for layer in range(arch.num_hidden_layers):
        for tensor in layer_tensors(arch, layer):
            if tensor.kind == "expert":
                experts += tensor.elements
            elif tensor.name.startswith(("mlp.", "shared_experts.")):
                dense += tensor.elements
            elif tensor.kind == "linear":
                attention += tensor.elements
            else:
                other += tensor.elements
    other += arch.hidden_size  # final norm
    embedding = arch.vocab_size * arch.hidden_size
    lm_head = 0 if arch.tie_word_embeddings else embedding
    moe_layers = sum(1 for layer in range(arch.num_hidden_layers) if arch.layer_is_moe(layer))
    per_expert = (3 if arch.mlp_gated else 2) * arch.hidden_size * arch.expert_width
    inactive = moe_layers * (arch.num_experts - arch.num_experts_per_tok) * per_expert
    total = embedding + lm_head + attention + dense + experts + other
    return ParameterCount(embedding, lm_head, attention, dense, experts, other, total - inactive)
