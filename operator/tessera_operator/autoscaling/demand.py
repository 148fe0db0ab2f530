"""From one observation to the load: how many replicas' worth of busy time the Model's traffic takes.

An engine step takes t0 + (work), where the work grows with the prompts prefilled, the sequences decoded
and the KV cache they hold. A pod whose load takes a fraction u of its time therefore shows a time per
output token of t0 / (1 - u): its utilisation is u = 1 - t0 / TPOT, whatever the mix of prompt and
output lengths. Summed over the ready pods, that is the load in busy replicas; the policy divides it by
its target utilisation to get the replicas it needs.

Utilisation cannot see past saturation, nor demand held at the router, so the policy also learns what one
request per second costs (utilisation / request rate, averaged while pods are not saturated) and, when
pods saturate, multiplies the router's request rate, plus the backlog to drain, by it. The KV cache is a
second ceiling, counted in replicas directly.

The Model's own targets add floors, each a replica count like an HPA metric's: the waiting and held
requests over `queuePerReplica`, and the requests in flight over `concurrencyPerReplica`. While replicas
load, a floor asks for no more than the replicas there and on the way: a queue that builds during a cold
start is theirs to drain, so the floors cannot run away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tessera_operator.autoscaling.config import PolicyConfig
from tessera_operator.autoscaling.observation import Observation
from tessera_operator.autoscaling.state import PolicyState

#: A pod above this utilisation is saturated: its utilisation under-states its load, so it does not
#: teach the policy what a request costs.
SATURATED_UTILISATION = 0.92
#: Waiting requests per ready pod beyond which the fleet counts as queueing (one or two waiting for the
#: next engine step is normal).
QUEUE_PER_POD = 2


@dataclass(frozen=True, slots=True)
class LoadEstimate:
    """The load in busy replicas now, and the figures it came from (for the reason sentence)."""

    busy_replicas: float
    #: Replicas the KV cache alone needs: the pods' usage summed over the KV-cache target.
    kv_replicas: float
    #: Which signal set the busy load: "utilisation", "request rate" or "none".
    source: str
    request_rate: float
    backlog: int
    cost_per_request_rate: float | None
    unloaded_tpot_seconds: float | None
    saturated: bool
    #: Replicas the queue and concurrency floors ask for (0 when the Model sets neither target).
    floor_replicas: float = 0.0
    #: Which floor set it: "queue", "concurrency" or "" (none).
    floor_source: str = ""
    #: Requests in flight (running and waiting on pods, or the router's count) plus those held.
    in_flight: float = 0.0


def utilisation_for(step_seconds: float, unloaded_tpot: float) -> float:
    """The utilisation at which an engine step takes `step_seconds`: 1 - t0 / step."""
    return max(0.05, 1.0 - unloaded_tpot / step_seconds)


def estimate_load(
    observation: Observation, config: PolicyConfig, state: PolicyState, elapsed_seconds: float
) -> LoadEstimate:
    """Estimate the load in busy replicas, and update what is learned about the request mix."""
    ready = [pod for pod in observation.pods if pod.ready]
    tpots = [pod.tpot_seconds for pod in ready if pod.tpot_seconds is not None and pod.tpot_seconds > 0]
    unloaded = config.unloaded_tpot_seconds
    if unloaded is None:
        learned = state.unloaded_tpot_seconds
        unloaded = min([*tpots, learned] if learned is not None else tpots, default=None)
    backlog = observation.router_held + int(sum(pod.waiting for pod in ready))
    rate = observation.request_rate if observation.request_rate is not None else 0.0
    cost = state.cost_per_request_rate
    queue_limit = QUEUE_PER_POD if config.queue_per_replica is None else config.queue_per_replica
    saturated = observation.router_held > 0 or backlog > queue_limit * max(1, len(ready))
    utilisation = 0.0
    if unloaded is not None:
        per_pod = [
            max(0.0, 1.0 - unloaded / pod.tpot_seconds) if pod.tpot_seconds else 0.0 for pod in ready
        ]
        utilisation = sum(per_pod)
        saturated = saturated or any(value > SATURATED_UTILISATION for value in per_pod)
        if rate > 0 and ready and not saturated and utilisation > 0:
            observed = utilisation / rate
            weight = 1.0 - math.pow(0.5, elapsed_seconds / config.cost_half_life_seconds)
            cost = observed if cost is None else cost + weight * (observed - cost)
    candidates = [(utilisation, "utilisation")]
    if saturated and cost is not None:
        # Saturated pods under-state their load; the router's rate (and the backlog to drain) does not.
        drain_rate = backlog / config.backlog_drain_seconds
        candidates.append(((rate + drain_rate) * cost, "request rate"))
    busy, source = max(candidates, key=lambda item: item[0])
    if busy <= 0:
        source = "none"
    in_flight = max(sum(pod.running + pod.waiting for pod in ready), float(observation.router_in_flight))
    in_flight += observation.router_held
    floor, floor_source = _floor(observation, config, backlog, in_flight, len(ready))
    return LoadEstimate(
        floor_replicas=floor,
        floor_source=floor_source,
        in_flight=in_flight,
        busy_replicas=busy,
        kv_replicas=sum(pod.kv_cache_usage for pod in ready) / config.kv_cache_target,
        source=source,
        request_rate=rate,
        backlog=backlog,
        cost_per_request_rate=cost,
        unloaded_tpot_seconds=unloaded,
        saturated=saturated,
    )


def _floor(
    observation: Observation, config: PolicyConfig, backlog: int, in_flight: float, ready: int
) -> tuple[float, str]:
    """The replicas the Model's queue and concurrency targets ask for, and which one asks the most."""
    candidates = [(0.0, "")]
    queue = config.queue_per_replica
    if queue is not None:
        # A zero target tolerates no queue: any waiting request asks for one replica more.
        needed = backlog / queue if queue > 0 else (ready + 1.0 if backlog > 0 else 0.0)
        candidates.append((needed, "queue"))
    if config.concurrency_per_replica is not None:
        candidates.append((in_flight / config.concurrency_per_replica, "concurrency"))
    floor, source = max(candidates, key=lambda item: item[0])
    if observation.loading_replicas > 0:
        floor = min(floor, float(observation.replicas))  # replicas on their way drain the queue
    return floor, source if floor > 0 else ""
