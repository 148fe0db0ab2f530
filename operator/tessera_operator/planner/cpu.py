"""Sizing for CPU placement (Tessera's `transformers` engine) and start-up time estimates.

The transformers engine de-quantizes every weight to float32 on load (a GGUF Q4 file of 90 MB becomes
about 0.5 GB in memory) and keeps a float32 KV cache per running sequence. Its memory request is the sum
of those, one prefill's activations (on CPU the attention scores of a prompt are materialised), and the
Python/PyTorch runtime itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .architecture import Architecture
from .catalogue import GIB
from .parameters import parameter_count

MIB = 1024**2
RUNTIME_OVERHEAD_BYTES = 640 * MIB
"""Python, PyTorch, transformers and the HTTP server, resident before any weight is loaded."""
LOAD_BANDWIDTH_BYTES_PER_S = 0.5 * GIB
"""Assumed rate at which weights stream from the model cache volume into the engine (per replica)."""
ENGINE_STARTUP_SECONDS = 60.0
"""vLLM's fixed start-up work after loading: profiling, torch.compile, CUDA-graph capture."""
CPU_ENGINE_STARTUP_SECONDS = 15.0
"""Interpreter and library imports of the transformers engine."""


@dataclass(frozen=True)
class CpuSizing:
    """Memory one CPU replica needs, in bytes, and the Kubernetes request that covers it."""

    weights: int
    kv_cache: int
    activation: int
    runtime: int
    max_model_len: int
    max_batch: int
    estimated_load_seconds: float

    @property
    def total(self) -> int:
        """All of it."""
        return self.weights + self.kv_cache + self.activation + self.runtime

    @property
    def memory_request(self) -> str:
        """A Kubernetes quantity (Mi, rounded up to 64 Mi) covering `total`."""
        return f"{math.ceil(self.total / (64 * MIB)) * 64}Mi"

    def to_dict(self) -> dict[str, Any]:
        """camelCase JSON view."""
        return {
            "weightsGiB": round(self.weights / GIB, 3), "kvCacheGiB": round(self.kv_cache / GIB, 3),
            "activationGiB": round(self.activation / GIB, 3), "runtimeGiB": round(self.runtime / GIB, 3),
            "totalGiB": round(self.total / GIB, 3), "memoryRequest": self.memory_request,
            "maxModelLen": self.max_model_len, "maxBatch": self.max_batch,
            "estimatedLoadSeconds": round(self.estimated_load_seconds, 1),
        }


def cpu_sizing(arch: Architecture, max_model_len: int | None = None, max_batch: int = 1,
               file_bytes: int | None = None) -> CpuSizing:
    """Memory for the transformers engine on CPU: float32 weights, float32 KV for `max_batch` sequences of
    `max_model_len` tokens, one prefill's activations, and the runtime.

    `file_bytes` (the size of the weights on disk, e.g. a GGUF file) sets the load-time estimate;
    without it the float32 size is used.
    """
    length = max_model_len or arch.max_position_embeddings or 2048
    if length < 1 or max_batch < 1:
        raise ValueError("max_model_len and max_batch must be positive")
    counts = parameter_count(arch)
    weights = counts.total * 4  # a tied head shares the embedding matrix, counted once
    kv = int(arch.kv_cache_bytes_per_token(4.0, 1) * length * max_batch)
    hidden = length * arch.hidden_size * 4
    mlp = length * (3 if arch.mlp_gated else 2) * (arch.expert_width if arch.is_moe else arch.intermediate_size) * 4
    scores = arch.num_attention_heads * length * length * 4  # eager/SDPA-math attention on CPU
    logits = arch.vocab_size * 4 * max_batch  # only the last position's logits are kept
    activation = 4 * hidden + max(mlp, scores) + logits
    load = (file_bytes or weights) / LOAD_BANDWIDTH_BYTES_PER_S + CPU_ENGINE_STARTUP_SECONDS
    return CpuSizing(weights, kv, activation, RUNTIME_OVERHEAD_BYTES, length, max_batch, load)


def estimate_load_seconds(weight_bytes: float, engine_startup_seconds: float = ENGINE_STARTUP_SECONDS) -> float:
    """Seconds from container start to ready: weights at LOAD_BANDWIDTH_BYTES_PER_S plus engine start-up.

    The operator derives the startup probe's budget from this.
    """
    return weight_bytes / LOAD_BANDWIDTH_BYTES_PER_S + engine_startup_seconds
