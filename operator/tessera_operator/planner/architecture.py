"""A model's architecture: the config.json fields the planner needs, and nothing else.

`Architecture` is built from a Hugging Face `config.json` (`from_hf_config`), from the inline
`spec.source.architecture` of a Model (`from_mapping`, camelCase or snake_case keys), from a GGUF file's
metadata (`from_gguf`) or from safetensors headers (`from_safetensors_headers`). The last two live in
`formats.py` and are re-exported here as class methods.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .quantization import CheckpointQuantization, checkpoint_quantization_from_config

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])([A-Z])")

# Model families whose MLP has no gate (two matrices instead of three).
_UNGATED_MLP_TYPES = frozenset({"gpt2", "gpt_neox", "phi", "starcoder2", "falcon", "opt", "bloom"})
# Families with qkv bias by default (Qwen2 and its MoE sibling always have it).
_QKV_BIAS_TYPES = frozenset({"qwen2", "qwen2_moe"})
# Families with per-head RMSNorm on q and k.
_QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2"})
# Gemma 2/3 have four norms per layer (pre/post attention, pre/post feed-forward).
_FOUR_NORM_TYPES = frozenset({"gemma2", "gemma3", "gemma3_text"})
# Families that tie the output head to the embedding unless told otherwise.
_TIED_BY_DEFAULT = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})


class ArchitectureError(ValueError):
    """The architecture description is missing a field or is inconsistent."""


def snake_case(key: str) -> str:
    """`numKeyValueHeads` -> `num_key_value_heads` (snake_case keys pass through unchanged)."""
    return _CAMEL_BOUNDARY.sub(r"_\1", key).lower()


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, as far as memory and speed depend on it."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    model_type: str = "llama"
    tie_word_embeddings: bool = False
    max_position_embeddings: int | None = None
    torch_dtype: str = "bfloat16"
    # Attention details.
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    mlp_gated: bool = True
    rotary_dim: int | None = None
    rope_cache_positions: int | None = None
    sliding_window: int | None = None
    sliding_window_layers: int = 0
    final_logit_softcapping: float | None = None
    # Mixture of experts.
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int | None = None
    shared_expert_intermediate_size: int = 0
    shared_expert_gate: bool = False
    first_k_dense_replace: int = 0
    moe_layer_step: int = 1
    dense_layers: tuple[int, ...] = ()
    expert_bias: bool = False
    # Multi-head latent attention (DeepSeek V2/V3).
    kv_lora_rank: int | None = None
    q_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    # What the checkpoint is stored in.
    quantization: CheckpointQuantization | None = None
    checkpoint_bytes: int | None = None
    weights_source: str = "architecture"
    name: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                     "head_dim", "intermediate_size", "vocab_size"):
            if getattr(self, name) < 1:
                raise ArchitectureError(f"{name} must be at least 1")
        if self.is_moe and (self.num_experts_per_tok < 1 or self.num_experts_per_tok > self.num_experts):
            raise ArchitectureError("num_experts_per_tok must lie between 1 and num_experts")

    # ---- derived facts -------------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        """Whether some layers route tokens to experts."""
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        """Whether attention is multi-head latent attention (one compressed latent cached per token)."""
        return self.kv_lora_rank is not None

    @property
    def expert_width(self) -> int:
        """Intermediate width of one routed expert."""
        return self.moe_intermediate_size or self.intermediate_size

    @property
    def weight_dtype_bytes(self) -> int:
        """Bytes of one unquantized parameter (the dtype activations also use)."""
        return 4 if self.torch_dtype in ("float32", "fp32") else 2

    def layer_is_moe(self, layer: int) -> bool:
        """Whether layer `layer` (0-based) has routed experts instead of a dense MLP."""
        if not self.is_moe or layer < self.first_k_dense_replace or layer in self.dense_layers:
            return False
        return (layer + 1) % max(1, self.moe_layer_step) == 0

    def kv_cache_bytes_per_token(self, dtype_bytes: float, tensor_parallel: int = 1,
                                 layers: int | None = None) -> float:
        """KV-cache bytes one token costs on one tensor-parallel rank, over `layers` layers (all by default).

        Standard attention stores K and V for the rank's KV heads; when TP exceeds the KV heads each rank
        keeps one (replicated) head. MLA stores one latent plus the rotary key per token, not split by TP.
        """
        count = self.num_hidden_layers if layers is None else layers
        if self.is_mla:
            per_layer = (self.kv_lora_rank or 0) + (self.qk_rope_head_dim or 0)
            return count * per_layer * dtype_bytes
        heads_per_rank = max(1, self.num_key_value_heads // tensor_parallel)
        return count * 2 * heads_per_rank * self.head_dim * dtype_bytes

    def with_checkpoint_bytes(self, total_bytes: int, source: str) -> Architecture:
        """A copy that knows the real size of its weights (from file headers)."""
        return replace(self, checkpoint_bytes=total_bytes, weights_source=source)

    def summary(self) -> dict[str, Any]:
        """A small camelCase description for JSON output."""
        from .parameters import parameter_count

        counts = parameter_count(self)
        return {
            "name": self.name,
            "modelType": self.model_type,
            "parameters": counts.total,
            "activeParameters": counts.active_per_token,
            "layers": self.num_hidden_layers,
            "hiddenSize": self.hidden_size,
            "attentionHeads": self.num_attention_heads,
            "kvHeads": self.num_key_value_heads,
            "headDim": self.head_dim,
            "vocabSize": self.vocab_size,
            "experts": self.num_experts or None,
            "mla": self.is_mla,
            "dtype": self.torch_dtype,
            "checkpointQuantization": self.quantization.method if self.quantization else None,
            "checkpointBytes": self.checkpoint_bytes,
            "weightsSource": self.weights_source,
        }

    # ---- constructors ----------------------------------------------------------------------------

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], name: str | None = None) -> Architecture:
        """Build from a Hugging Face config.json mapping (llama, mistral, qwen2/3, gemma2/3, mixtral,
        qwen2/3-moe, deepseek-v2/v3, gpt-oss and look-alikes)."""
        return _from_config(dict(config), name)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], name: str | None = None) -> Architecture:
        """Build from a mapping with config.json field names in camelCase or snake_case
        (a Model's `spec.source.architecture`)."""
        return _from_config({snake_case(str(k)): v for k, v in mapping.items()}, name)

    @classmethod
    def from_gguf(cls, path: str | Path) -> Architecture:
        """Build from the metadata of a GGUF file; the real weight bytes come from its tensor table."""
        from .formats import architecture_from_gguf

        return architecture_from_gguf(Path(path))

    @classmethod
    def from_safetensors_headers(cls, paths: Sequence[str | Path],
                                 config: Mapping[str, Any] | None = None) -> Architecture:
        """Build from safetensors files, reading only their JSON headers (for the real byte size).

        With `config` the structure comes from config.json and the headers add the byte size; without
        it the structure is inferred from tensor names and shapes.
        """
        from .formats import architecture_from_safetensors

        return architecture_from_safetensors([Path(p) for p in paths], config)


def _int(cfg: Mapping[str, Any], *keys: str, default: int | None = None) -> int | None:
    for key in keys:
        value = cfg.get(key)
        if value is not None and not isinstance(value, bool):
            try:
                return int(value)
            except (TypeError, ValueError) as exc:
                raise ArchitectureError(f"{key} must be an integer, got {value!r}") from exc
    return default


def _required(cfg: Mapping[str, Any], *keys: str) -> int:
    value = _int(cfg, *keys)
    if value is None:
        raise ArchitectureError(f"config is missing {keys[0]}")
    return value


def _unwrap_text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    # Multimodal wrappers (gemma3, llava, mistral3) keep the language model under text_config.
    text = cfg.get("text_config")
    if isinstance(text, Mapping) and "hidden_size" not in cfg:
        merged = {snake_case(str(k)): v for k, v in text.items()}
        for key in ("quantization_config", "torch_dtype", "dtype", "tie_word_embeddings"):
            if key in cfg and key not in merged:
                merged[key] = cfg[key]
        merged.setdefault("model_type", cfg.get("model_type"))
        return merged
    return cfg


def _rope_positions(cfg: Mapping[str, Any], max_positions: int | None) -> int | None:
    # YaRN-style scaling builds its cos/sin cache for original positions x factor.
    scaling = cfg.get("rope_scaling")
    if isinstance(scaling, Mapping):
        kind = scaling.get("rope_type") or scaling.get("type")
        original = scaling.get("original_max_position_embeddings")
        factor = scaling.get("factor")
        if kind in ("yarn", "deepseek_yarn") and original and factor:
            return int(float(original) * float(factor))
    return max_positions


def _sliding_layers(cfg: Mapping[str, Any], model_type: str, layers: int) -> int:
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list):
        return sum(1 for t in layer_types if str(t) == "sliding_attention")
    if cfg.get("sliding_window") is None:
        return 0
    if model_type == "gemma2":
        return layers // 2  # alternating local/global
    pattern = _int(cfg, "sliding_window_pattern")
    if model_type in ("gemma3", "gemma3_text") and pattern:
        return layers - layers // pattern
    if model_type in ("qwen2", "qwen2_moe") and not cfg.get("use_sliding_window", False):
        return 0
    return layers if model_type == "mistral" else 0


def _from_config(raw: dict[str, Any], name: str | None) -> Architecture:
    cfg = _unwrap_text_config(raw)
    model_type = str(cfg.get("model_type") or "llama")
    hidden = _required(cfg, "hidden_size", "n_embd", "d_model")
    layers = _required(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _required(cfg, "num_attention_heads", "n_head", "num_heads")
    kv_heads = _int(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv", default=heads) or heads
    head_dim = _int(cfg, "head_dim", "attention_head_dim") or hidden // heads
    vocab = _required(cfg, "vocab_size", "n_vocab")
    num_experts = _int(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=0) or 0
    intermediate = _int(cfg, "intermediate_size", "ffn_hidden_size", "n_inner")
    moe_intermediate = _int(cfg, "moe_intermediate_size", "expert_intermediate_size")
    if intermediate is None:
        if moe_intermediate is None:
            raise ArchitectureError("config is missing intermediate_size")
        intermediate = moe_intermediate
    max_positions = _int(cfg, "max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16").replace("torch.", "")

    shared_width = 0
    if num_experts:
        shared_width = _int(cfg, "shared_expert_intermediate_size", default=0) or 0
        n_shared = _int(cfg, "n_shared_experts", "num_shared_experts", default=0) or 0
        if n_shared and not shared_width:
            shared_width = n_shared * (moe_intermediate or intermediate)
    mlp_only = cfg.get("mlp_only_layers") or []
    kv_lora = _int(cfg, "kv_lora_rank")
    rotary_dim = head_dim
    partial = cfg.get("partial_rotary_factor")
    if isinstance(partial, int | float) and not isinstance(partial, bool) and 0 < partial < 1:
        rotary_dim = int(head_dim * partial)
    if kv_lora is not None:
        rotary_dim = _int(cfg, "qk_rope_head_dim", default=64) or 64
    tie_default = model_type in _TIED_BY_DEFAULT
    notes: list[str] = []
    if model_type == "gpt_oss":
        notes.append("gpt-oss: MXFP4 expert weights are padded to a 256-wide hidden dimension by vLLM's kernels")

    return Architecture(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=vocab,
        model_type=model_type,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", tie_default)),
        max_position_embeddings=max_positions,
        torch_dtype=dtype,
        qkv_bias=bool(cfg.get("attention_bias", model_type in _QKV_BIAS_TYPES or cfg.get("qkv_bias", False))),
        o_bias=bool(cfg.get("attention_bias", False)) and model_type == "gpt_oss",
        qk_norm=model_type in _QK_NORM_TYPES,
        norms_per_layer=4 if model_type in _FOUR_NORM_TYPES else 2,
        mlp_gated=model_type not in _UNGATED_MLP_TYPES,
        rotary_dim=rotary_dim,
        rope_cache_positions=_rope_positions(cfg, max_positions),
        sliding_window=_int(cfg, "sliding_window"),
        sliding_window_layers=_sliding_layers(cfg, model_type, layers),
        final_logit_softcapping=cfg.get("final_logit_softcapping"),
        num_experts=num_experts,
        num_experts_per_tok=_int(cfg, "num_experts_per_tok", "experts_per_token", "moe_topk", default=0) or 0,
        moe_intermediate_size=moe_intermediate if num_experts else None,
        shared_expert_intermediate_size=shared_width,
        shared_expert_gate=model_type == "qwen2_moe" and shared_width > 0,
        first_k_dense_replace=_int(cfg, "first_k_dense_replace", default=0) or 0,
        moe_layer_step=_int(cfg, "decoder_sparse_step", "moe_layer_freq", default=1) or 1,
        dense_layers=tuple(int(i) for i in mlp_only),
        expert_bias=model_type == "gpt_oss",
        kv_lora_rank=kv_lora,
        q_lora_rank=_int(cfg, "q_lora_rank"),
        qk_rope_head_dim=_int(cfg, "qk_rope_head_dim") if kv_lora is not None else None,
        qk_nope_head_dim=_int(cfg, "qk_nope_head_dim") if kv_lora is not None else None,
        v_head_dim=_int(cfg, "v_head_dim") if kv_lora is not None else None,
        quantization=checkpoint_quantization_from_config(cfg.get("quantization_config")),
        name=name or (str(cfg["_name_or_path"]) if cfg.get("_name_or_path") else None),
        notes=tuple(notes),
    )
