"""How much of a replica a stream of requests keeps busy, from the profile's step-time model.

With N sequences decoding and K tokens resident, a step takes t0 + b*N + c*K (+ a per prefilled token).
Over a second the replica spends a*(prompt tokens) + (b + c*resident)*(generated tokens) on the load and
t0 per step on the fixed cost, so a request costs about a*p + (b + c*(p + g/2))*g seconds of the replica
beyond the fixed cost. A replica whose load is a fraction u of its time has steps of t0/(1 - u) seconds:
that is how a utilisation target maps to a time per output token, and back.
"""

from __future__ import annotations

import bisect
import math

from tessera_operator.simulator.profile import ReplicaProfile
from tessera_operator.simulator.trace import Trace


def request_work_seconds(prompt: int, generated: int, profile: ReplicaProfile) -> float:
    """Seconds of one replica's time a request takes beyond the per-step fixed cost."""
    resident = prompt + generated / 2
    per_token = profile.seconds_per_sequence + profile.seconds_per_kv_token * resident
    return profile.prefill_seconds_per_token * prompt + per_token * generated


def work_per_bucket(trace: Trace, profile: ReplicaProfile, bucket_seconds: float) -> list[float]:
    """Replica-seconds of work per second arriving in each bucket of the trace (its future load)."""
    count = int((trace.arrivals[-1] if trace.arrivals else 0.0) // bucket_seconds) + 1
    work = [0.0] * count
    for arrival, prompt, generated in zip(
        trace.arrivals, trace.prompt_tokens, trace.generated_tokens, strict=True
    ):
        work[int(arrival // bucket_seconds)] += request_work_seconds(prompt, generated, profile)
    return [total / bucket_seconds for total in work]


def replicas_for_work(work_per_second: float, utilisation: float) -> int:
    """Replicas needed to carry `work_per_second` with each replica busy `utilisation` of its time."""
    return max(0, math.ceil(work_per_second / utilisation - 1e-9))


def initial_replicas(
    trace: Trace, profile: ReplicaProfile, utilisation: float = 0.7, minutes: int = 3
) -> int:
    """A warm fleet for the trace's first minutes, so that no policy starts cold and empty: every policy
    gets the same, sized for the busiest of the first `minutes` minutes (time to gather its signals)."""
    if not trace.arrivals:
        return 1
    busiest = 0.0
    for minute in range(minutes):
        start = bisect.bisect_left(trace.arrivals, trace.arrivals[0] + 60.0 * minute)
        end = bisect.bisect_left(trace.arrivals, trace.arrivals[0] + 60.0 * (minute + 1))
        work = sum(
            request_work_seconds(trace.prompt_tokens[index], trace.generated_tokens[index], profile)
            for index in range(start, end)
        )
        busiest = max(busiest, work / 60.0)
    return max(1, replicas_for_work(busiest, utilisation))
