"""The discrete-event simulation: a trace's requests, a least-outstanding router, a fleet of replicas
that take a cold start to become ready, and a policy that sets the replica count.

Events sit in one heap (replica run ends, replicas becoming ready, the policy's samples, timeline
ticks); arrivals are merged from the sorted trace. The router holds requests while no replica is ready
(scale from zero) and rejects those held longer than the hold timeout.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from tessera_operator.autoscaling.observation import Observation, PodSample
from tessera_operator.simulator.capacity import initial_replicas
from tessera_operator.simulator.policies.base import SimulatedPolicy
from tessera_operator.simulator.profile import ReplicaProfile
from tessera_operator.simulator.replica import DRAINING, LOADING, READY, RELEASED, Replica, RequestLog
from tessera_operator.simulator.results import SimulationResult, Timeline, summarise
from tessera_operator.simulator.trace import Trace

RUN_END, BECOMES_READY, SAMPLE, TICK = 0, 1, 2, 3
PROGRESS_EVERY = 20_000
_outstanding = attrgetter("outstanding")


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """Run-wide settings: the SLO that requests are judged by and the router's holding limits."""

    ttft_slo_seconds: float = 1.0
    tpot_slo_seconds: float = 0.05
    #: How long the router holds a request while no replica is ready before answering 503.
    hold_timeout_seconds: float = 300.0
    #: How many requests the router holds at most per Model (beyond that it answers 429).
    hold_queue_limit: int = 100_000
    #: Replicas ready at the start; None sizes a warm fleet for the trace's first minute.
    initial_replicas: int | None = None
    #: Spacing of the recorded timeline (replicas and load over time, for plots).
    timeline_seconds: float = 10.0


class _Simulation:
    def __init__(
        self,
        trace: Trace,
        policy: SimulatedPolicy,
        profile: ReplicaProfile,
        settings: SimulationSettings,
        progress: Callable[[float], None] | None = None,
    ):
        self.progress = progress
        self.trace = trace
        self.policy = policy
        self.profile = profile
        self.settings = settings
        self.log = RequestLog(trace.arrivals, trace.prompt_tokens, trace.generated_tokens)
        self.replicas: list[Replica] = []  # every replica ever created
        self.active: list[Replica] = []  # loading or ready: what spec.replicas counts
        self.ready: list[Replica] = []  # the router's endpoints
        self.held: deque[int] = deque()
        self.heap: list[tuple[float, int, int, Replica | None, int]] = []
        self.sequence = 0
        self.changes = 0
        self.arrived = 0
        self.arrived_at_last_sample = 0
        self.last_sample = 0.0
        self.arrived_at_last_tick = 0
        self.timeline = Timeline()

    def push(self, when: float, kind: int, replica: Replica | None = None, epoch: int = 0) -> None:
        self.sequence += 1
        heapq.heappush(self.heap, (when, self.sequence, kind, replica, epoch))

    def run(self) -> SimulationResult:
        log = self.log
        arrivals = log.arrival
        total = len(arrivals)
        start = self.settings.initial_replicas
        if start is None:  # a policy may say how it starts (a static fleet); otherwise a shared warm fleet
            start = getattr(self.policy, "initial_replicas", None)
        for _ in range(initial_replicas(self.trace, self.profile) if start is None else start):
            self._add_replica(0.0, ready_at=0.0)
        self.push(self.policy.sample_seconds, SAMPLE)
        self.push(self.settings.timeline_seconds, TICK)
        heap = self.heap
        limit = self.profile.kv_cache_tokens
        index = 0
        now = 0.0
        while True:
            next_arrival = arrivals[index] if index < total else math.inf
            if heap and heap[0][0] <= next_arrival:
                now, _, kind, replica, epoch = heapq.heappop(heap)
                if kind == RUN_END:
                    assert replica is not None
                    if epoch == replica.epoch:
                        self._after_run(replica)
                elif kind == BECOMES_READY:
                    assert replica is not None
                    if replica.state == LOADING:
                        replica.state = READY
                        self.ready.append(replica)
                        self._flush_held(now)
                elif kind == SAMPLE:
                    self._sample(now)
                    if index >= total and self._drained():
                        break
                    self.push(now + self.policy.sample_seconds, SAMPLE)
                else:
                    self._tick(now)
                    self.push(now + self.settings.timeline_seconds, TICK)
            elif index < total:
                now = next_arrival
                self.arrived += 1
                if log.prompt[index] + log.generated[index] > limit:
                    log.rejected[index] = True  # can never fit one replica's KV cache
                else:
                    self._route(index, now)
                index += 1
                if self.progress is not None and index % PROGRESS_EVERY == 0:
                    self.progress(index / total)
            else:
                break
        if self.progress is not None:
            self.progress(1.0)
        end = max([arrivals[-1] if total else 0.0] + [t for t in log.finish if not math.isnan(t)])
        return summarise(
            self.log,
            self.trace.warmup_requests,
            self.trace.warmup_seconds, self.replicas, self.timeline, end, self.changes,
            self.profile.gpus_per_replica, self.settings.ttft_slo_seconds, self.settings.tpot_slo_seconds,
        )

    def _drained(self) -> bool:
        return not self.held and all(replica.outstanding == 0 for replica in self.replicas)

    # -- router ----------------------------------------------------------------------------------------

    def _route(self, request: int, now: float) -> None:
        if not self.ready:
            if len(self.held) >= self.settings.hold_queue_limit:
                self.log.rejected[request] = True
            else:
                self.held.append(request)
            return
        replica = min(self.ready, key=_outstanding)
        when = replica.dispatch(request, now)
        if when is not None:
            self.push(when, RUN_END, replica, replica.epoch)

    def _flush_held(self, now: float) -> None:
        self._expire_held(now)
        while self.held and self.ready:
            self._route(self.held.popleft(), now)

    def _expire_held(self, now: float) -> None:
        timeout = self.settings.hold_timeout_seconds
        while self.held and now - self.log.arrival[self.held[0]] > timeout:
            self.log.rejected[self.held.popleft()] = True

    # -- replicas --------------------------------------------------------------------------------------

    def _after_run(self, replica: Replica) -> None:
        when = replica.end_run()
        if when is not None:
            self.push(when, RUN_END, replica, replica.epoch)
        elif replica.state == DRAINING and replica.outstanding == 0:
            replica.state = RELEASED
            replica.released_at = replica.run_end

    def _add_replica(self, now: float, ready_at: float) -> None:
        replica = Replica(len(self.replicas), now, ready_at, self.profile, self.log)
        self.replicas.append(replica)
        self.active.append(replica)
        if replica.state == READY:
            self.ready.append(replica)
        else:
            self.push(ready_at, BECOMES_READY, replica)

    def _scale_to(self, desired: int, now: float) -> None:
        current = len(self.active)
        if desired == current:
            return
        if now >= self.trace.warmup_seconds:
            self.changes += 1
        for _ in range(desired - current):
            self._add_replica(now, now + self.profile.cold_start_seconds)
        surplus = current - desired
        # Like a ReplicaSet: pods not ready yet go first (newest first), then the least busy ready ones.
        while surplus > 0:
            loading = [replica for replica in self.active if replica.state == LOADING]
            victim = loading[-1] if loading else min(self.ready, key=_outstanding)
            self.active.remove(victim)
            if victim.state == READY:
                self.ready.remove(victim)
            if victim.outstanding == 0:
                victim.state = RELEASED
                victim.released_at = now
            else:
                victim.state = DRAINING  # finishes what it holds, takes nothing new
            surplus -= 1

    # -- observation -----------------------------------------------------------------------------------

    def _sample(self, now: float) -> None:
        self._expire_held(now)
        elapsed = now - self.last_sample
        pods: list[PodSample] = []
        ttfts: list[float] = []
        in_flight = 0
        for replica in self.replicas:
            if replica.state == RELEASED:
                continue
            in_flight += replica.outstanding
            if replica.recent_ttfts:
                ttfts.extend(replica.recent_ttfts)
                replica.recent_ttfts = []
            if replica.state == LOADING:
                pods.append(PodSample(ready=False, name=f"replica-{replica.index}"))
            elif replica.state == READY:
                latency, tokens, ttft_sum, ttft_count = replica.window_mark
                new_tokens = replica.tokens - tokens
                new_ttfts = replica.ttft_count - ttft_count
                pods.append(
                    PodSample(
                        ready=True,
                        name=f"replica-{replica.index}",
                        running=replica.running(),
                        waiting=len(replica.waiting),
                        kv_cache_usage=replica.kv_usage(now),
                        ttft_seconds=(replica.ttft_sum - ttft_sum) / new_ttfts if new_ttfts else None,
                        tpot_seconds=(replica.tok_latency - latency) / new_tokens if new_tokens else None,
                    )
                )
                replica.window_mark = (replica.tok_latency, replica.tokens, replica.ttft_sum, replica.ttft_count)
        ttfts.sort()
        observation = Observation(
            time_seconds=now,
            replicas=len(self.active),
            ready_replicas=len(self.ready),
            loading_replicas=len(self.active) - len(self.ready),
            router_in_flight=in_flight,
            router_held=len(self.held),
            request_rate=(self.arrived - self.arrived_at_last_sample) / elapsed if elapsed > 0 else None,
            ttft_p95_seconds=ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))] if ttfts else None,
            pods=tuple(pods),
        )
        self.last_sample = now
        self.arrived_at_last_sample = self.arrived
        self._scale_to(max(0, self.policy.on_sample(observation)), now)
        if self.ready and self.held:
            self._flush_held(now)

    def _tick(self, now: float) -> None:
        period = self.settings.timeline_seconds
        start = self.trace.warmup_seconds
        if now >= start + period:  # the timeline shows the trace proper, from its own time 0
            rate = (self.arrived - self.arrived_at_last_tick) / period
            self.timeline.record(now - start, len(self.active), len(self.ready), rate)
        self.arrived_at_last_tick = self.arrived


def simulate(
    trace: Trace,
    policy: SimulatedPolicy,
    profile: ReplicaProfile,
    settings: SimulationSettings | None = None,
    progress: Callable[[float], None] | None = None,
) -> SimulationResult:
    """Replay `trace` through a fleet scaled by `policy`; returns the figures and the timeline.

    `progress`, when given, is called now and then with the share of arrivals replayed (0 to 1).
    """
    return _Simulation(trace, policy, profile, settings or SimulationSettings(), progress).run()
