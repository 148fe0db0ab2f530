"""Replica performance profiles: how long one engine step takes, how much KV cache fits, how long a start takes.

A profile is data. The step-time model is linear in what a continuous-batching engine does in one step:

    step seconds = t0 + a * (prompt tokens prefilled in the step)
                      + b * (sequences in the step)
                      + c * (KV-cache tokens resident at the start of the step)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml


def planned_kv_cache_tokens(config: str, gpu: str, max_model_len: int, utilization: float = 0.9) -> int:
    """KV-cache capacity of one replica, from the planner (the same code the operator plans with)."""
    from tessera_operator.planner import Architecture, PlanRequest, known_config, plan

    result = plan(
        Architecture.from_hf_config(known_config(config)),
        PlanRequest(gpu=gpu, tensor_parallel=1, pipeline_parallel=1, max_model_len=max_model_len,
                    gpu_memory_utilization=utilization),
    )
    if result.chosen is None:
        raise ValueError(f"{config} does not fit on one {gpu}: {result.explanation}")
    return int(result.chosen.kv_cache_tokens)


#: KV-cache capacity of Llama-3.1-8B (bf16) on one H100 80 GB, vLLM at gpu_memory_utilization 0.9,
#: as planned (about 51.4 GiB of KV blocks at 128 KiB per token).
LLAMA_3_1_8B_H100_KV_CACHE_TOKENS = planned_kv_cache_tokens("llama-3.1-8b", "H100-80GB", 16384)


@dataclass(frozen=True, slots=True)
class ReplicaProfile:
    """How one replica of a model on its GPUs behaves; times in seconds."""

    name: str
    #: t0: fixed cost of one engine step (scheduling, kernel launches, sampling).
    step_overhead_seconds: float = 0.0065
    #: a: cost per prompt token prefilled in the step.
    prefill_seconds_per_token: float = 0.022e-3
    #: b: cost per sequence in the step.
    seconds_per_sequence: float = 0.015e-3
    #: c: cost per KV-cache token resident (attention reads the whole cache of every sequence).
    seconds_per_kv_token: float = 4.7e-8
    #: Time from creating a replica to its readiness (scheduling, image, weights, warm-up).
    cold_start_seconds: float = 90.0
    #: Tokens of KV cache one replica holds (from the planner).
    kv_cache_tokens: int = LLAMA_3_1_8B_H100_KV_CACHE_TOKENS
    #: vLLM's `--max-num-seqs` (its default on an H100 for the OpenAI server is 1024).
    max_num_seqs: int = 1024
    #: vLLM's `--max-num-batched-tokens`: the token budget of one step, chunked prefill included.
    max_batched_tokens: int = 8192
    #: GPUs one replica holds (tensor x pipeline parallelism); GPU-hours count all of them.
    gpus_per_replica: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The profile with camelCase keys, as profile files spell it."""
        return {_camel(key): value for key, value in asdict(self).items()}


PROFILES: dict[str, ReplicaProfile] = {
    "llama-3.1-8b-h100": ReplicaProfile(name="llama-3.1-8b-h100"),
}
DEFAULT_PROFILE = "llama-3.1-8b-h100"


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def profile_from_dict(data: dict[str, Any]) -> ReplicaProfile:
    """Build a profile from camelCase (or snake_case) keys; unknown keys are refused."""
    by_key = {}
    for item in fields(ReplicaProfile):
        by_key[item.name] = item.name
        by_key[_camel(item.name)] = item.name
    unknown = sorted(set(data) - set(by_key))
    if unknown:
        raise ValueError(f"unknown profile fields: {', '.join(unknown)}")
    values = {by_key[key]: value for key, value in data.items()}
    values.setdefault("name", "custom")
    return ReplicaProfile(**values)


def load_profile(name_or_path: str) -> ReplicaProfile:
    """A built-in profile by name, or one read from a JSON or YAML file."""
    if name_or_path in PROFILES:
        return PROFILES[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"no profile named {name_or_path!r} (built in: {known}) and no such file")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profile is a mapping of fields to values")
    return profile_from_dict(data)
