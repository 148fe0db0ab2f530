"""What the vLLM version changes about memory: batching defaults, sampler and CUDA-graph accounting.

vLLM sizes its KV cache after a profiling run of `max_num_batched_tokens` dummy tokens spread over
`max_num_seqs` requests, followed by one sampler run on the last token of every request. Both numbers
have per-GPU and per-version defaults, and the sampler's implementation decides how many copies of the
[requests x vocabulary] logits exist at its peak. These eras are the ones the planner models:

- `v0` (before 0.8): 256 sequences; batched tokens = max(max_model_len, 2048), or 2048 with chunked
  prefill for contexts above 32K.
- `v1` (0.8 up to 0.20): on GPUs with at least 70 GiB that are not A100s, 8192 batched tokens and 1024
  sequences; elsewhere 2048 and 256. Top-k/top-p sampling sorts the logits in PyTorch.
- `v1-graphs` (0.21 and later): as v1, plus 16384 batched tokens on GPUs with at least 160 GiB; the
  CUDA-graph memory is estimated before the KV cache is sized; gpu_memory_utilization defaults to 0.92
  and the FlashInfer sampler is used when present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .catalogue import GpuSpec

DEFAULT_VLLM_VERSION = "0.11"

Era = Literal["v0", "v1", "v1-graphs"]
Sampler = Literal["native", "flashinfer"]


class EngineVersionError(ValueError):
    """A vLLM version string the planner cannot read."""


@dataclass(frozen=True)
class EngineProfile:
    """Memory-relevant behaviour of one vLLM version."""

    version: str
    era: Era
    sampler: Sampler
    default_gpu_memory_utilization: float
    counts_cudagraph_memory: bool

    def max_num_seqs(self, gpu: GpuSpec) -> int:
        """Default `max_num_seqs` of `vllm serve` on this GPU."""
        if self.era == "v0":
            return 256
        return 1024 if self._large_gpu(gpu) else 256

    def max_num_batched_tokens(self, gpu: GpuSpec, max_model_len: int) -> int:
        """Default `max_num_batched_tokens` of `vllm serve` (tokens in the profiling forward pass)."""
        if self.era == "v0":
            tokens = 2048 if max_model_len > 32768 else max(max_model_len, 2048)
        elif self.era == "v1-graphs" and gpu.memory_gib >= 160 and not gpu.is_a100:
            tokens = 16384
        else:
            tokens = 8192 if self._large_gpu(gpu) else 2048
        return min(tokens, self.max_num_seqs(gpu) * max_model_len)

    @staticmethod
    def _large_gpu(gpu: GpuSpec) -> bool:
        return gpu.memory_gib >= 70 and not gpu.is_a100

    def sampler_logits_copies(self, activation_bytes: int) -> float:
        """Peak bytes of the sampler per logit element, in units of one float32 logit.

        native (PyTorch sort for top-k/top-p): the model-dtype logits, their float32 copy, the sorted
        values (float32) and indices (int64), and the sort's scratch (an int64 index array plus CUB's
        double buffers for keys and values) -> 9.5 for bf16 models.
        flashinfer: model-dtype logits, float32 copy, top-k masked logits and probabilities -> 3.5.
        """
        model_copy = activation_bytes / 4
        float_copy = 0.0 if activation_bytes >= 4 else 1.0
        if self.sampler == "flashinfer":
            return model_copy + float_copy + 2.0
        sorted_outputs = 1.0 + 2.0
        sort_scratch = 2.0 + 1.0 + 2.0
        return model_copy + float_copy + sorted_outputs + sort_scratch


def _parse(version: str) -> tuple[int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if not match:
        raise EngineVersionError(f"cannot read vLLM version {version!r} (expected for example 0.11.0)")
    return int(match.group(1)), int(match.group(2))


def engine_profile(version: str | None = None, sampler: str | None = None) -> EngineProfile:
    """The profile of a vLLM version (default: 0.11, the version the planner's figures were checked on)."""
    text = version or DEFAULT_VLLM_VERSION
    major, minor = _parse(text)
    if (major, minor) < (0, 8):
        era: Era = "v0"
    elif (major, minor) < (0, 21):
        era = "v1"
    else:
        era = "v1-graphs"
    if sampler not in (None, "native", "flashinfer"):
        raise EngineVersionError(f"unknown sampler {sampler!r}; choose native or flashinfer")
    chosen: Sampler = "flashinfer" if (sampler == "flashinfer" or (sampler is None and era == "v1-graphs")) \
        else "native"
    return EngineProfile(
        version=text,
        era=era,
        sampler=chosen,
        default_gpu_memory_utilization=0.92 if era == "v1-graphs" else 0.90,
        counts_cudagraph_memory=era == "v1-graphs",
    )
