"""The policy's memory between two calls: explicit, small and serialisable.

The operator keeps it in `Model.status.autoscaling.state` between reconciles (`to_dict` and `from_dict`
use camelCase keys), so a restarted operator picks up where the last one left off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DemandSample:
    """One call's estimates: the load in busy replicas, the replicas the KV cache needs, the replica
    count a scale-down could go to at that moment, and the replicas the queue and concurrency floors ask."""

    time_seconds: float
    busy_replicas: float
    kv_replicas: float
    recommendation: int
    floor_replicas: float = 0.0
    #: Requests per second arriving (the router's count): the load's shape, uncapped by saturation.
    request_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Recent samples (as long as the longest window), what the policy has learned, and its last moves."""

    samples: tuple[DemandSample, ...] = ()
    #: (time, rise) of the load within one reaction time, over the variability window (see `variability`).
    rises: tuple[tuple[float, float], ...] = ()
    #: Learned cost of the request mix: replicas' worth of load per request per second.
    cost_per_request_rate: float | None = None
    #: Learned time per output token of an unloaded pod (when the config does not give it).
    unloaded_tpot_seconds: float | None = None
    #: Last time anything was in flight, held or arriving.
    last_active_seconds: float | None = None
    #: Last time the policy changed the replica count.
    last_change_seconds: float | None = None
    #: When the policy scaled down within the last hour (see `PolicyConfig.max_scale_downs_per_hour`).
    scale_down_times: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data with camelCase keys."""
        return {
            "samples": [
                [
                    round(sample.time_seconds, 3),
                    round(sample.busy_replicas, 4),
                    round(sample.kv_replicas, 4),
                    sample.recommendation,
                    round(sample.floor_replicas, 4),
                    round(sample.request_rate, 3),
                ]
                for sample in self.samples
            ],
            "rises": [[round(moment, 3), round(rise, 4)] for moment, rise in self.rises],
            "costPerRequestRate": self.cost_per_request_rate,
            "unloadedTpotSeconds": self.unloaded_tpot_seconds,
            "lastActiveSeconds": self.last_active_seconds,
            "lastChangeSeconds": self.last_change_seconds,
            "scaleDownTimes": [round(moment, 3) for moment in self.scale_down_times],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PolicyState:
        """Read back what `to_dict` wrote; missing or empty data gives a fresh state."""
        if not data:
            return cls()
        # Samples written before the floors existed have four fields, before the request rate five.
        samples = tuple(
            DemandSample(float(row[0]), float(row[1]), float(row[2]), int(row[3]),
                         float(row[4]) if len(row) > 4 else 0.0, float(row[5]) if len(row) > 5 else 0.0)
            for row in data.get("samples", [])
        )
        rises = tuple((float(row[0]), float(row[1])) for row in data.get("rises", []))
        return cls(
            samples=samples,
            rises=rises,
            cost_per_request_rate=_optional_float(data.get("costPerRequestRate")),
            unloaded_tpot_seconds=_optional_float(data.get("unloadedTpotSeconds")),
            last_active_seconds=_optional_float(data.get("lastActiveSeconds")),
            last_change_seconds=_optional_float(data.get("lastChangeSeconds")),
            scale_down_times=tuple(float(moment) for moment in data.get("scaleDownTimes", [])),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
