"""What a policy is to the simulator: it receives an Observation every `sample_seconds` and answers a
desired replica count. Baselines keep their own windows; Tessera's policy keeps explicit state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.profile import ReplicaProfile
from tessera_operator.simulator.trace import Trace


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What every policy may know about the run: bounds, SLO, profile; only the oracle reads the trace."""

    trace: Trace
    profile: ReplicaProfile
    min_replicas: int = 0
    max_replicas: int = 32
    scale_to_zero_after_seconds: float = 600.0
    ttft_slo_seconds: float = 1.0
    tpot_slo_seconds: float = 0.05

    def clamp(self, replicas: int) -> int:
        """Bound a replica count by the Model's minimum and maximum."""
        return max(self.min_replicas, min(self.max_replicas, replicas))


class SimulatedPolicy(Protocol):
    """A scaling policy as the simulator drives it."""

    #: How often the policy receives an Observation (its metric scrape period).
    sample_seconds: float

    def on_sample(self, observation: Observation) -> int:
        """Take one observation; answer the desired replica count (the current one for no change)."""
        ...

    def reason(self) -> str:
        """Why the last answer was what it was."""
        ...


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A named policy, its tunable setting and the values the benchmark sweeps fairly."""

    name: str
    build: Callable[[PolicyContext, float], SimulatedPolicy]
    setting_name: str
    default_setting: float
    sweep: tuple[float, ...]
    #: True when a larger setting means fewer replicas (a per-replica target), False when it means more.
    larger_is_leaner: bool = True
    description: str = ""


def ceil_ratio(total: float, target: float) -> int:
    """ceil(total / target), robust to float noise just above a whole number."""
    if target <= 0:
        raise ValueError("a target must be positive")
    return max(0, math.ceil(total / target - 1e-9))


class Window:
    """Timestamped samples kept for a fixed duration; mean and max over the last part of it."""

    __slots__ = ("length", "samples", "since")

    def __init__(self, length_seconds: float):
        self.length = length_seconds
        self.samples: list[tuple[float, float]] = []
        self.since = math.nan

    def add(self, now: float, value: float) -> None:
        """Record a sample and forget those older than the window."""
        if not self.samples and math.isnan(self.since):
            self.since = now
        self.samples.append((now, value))
        cutoff = now - self.length
        drop = 0
        while drop < len(self.samples) and self.samples[drop][0] <= cutoff:
            drop += 1
        if drop:
            del self.samples[:drop]

    def mean(self, now: float, seconds: float | None = None) -> float:
        """Mean of the samples within the last `seconds` (the whole window by default)."""
        cutoff = now - (self.length if seconds is None else seconds)
        values = [value for moment, value in self.samples if moment > cutoff]
        return sum(values) / len(values) if values else 0.0

    def max(self, now: float, seconds: float | None = None) -> float:
        """Largest sample within the last `seconds` (the whole window by default)."""
        cutoff = now - (self.length if seconds is None else seconds)
        return max((value for moment, value in self.samples if moment > cutoff), default=0.0)

    def min(self, now: float, seconds: float | None = None) -> float:
        """Smallest sample within the last `seconds` (the whole window by default)."""
        cutoff = now - (self.length if seconds is None else seconds)
        return min((value for moment, value in self.samples if moment > cutoff), default=0.0)

    def full(self, now: float) -> bool:
        """Whether samples have been taken for at least the window's length."""
        return not math.isnan(self.since) and now - self.since >= self.length - 1e-9
