"""The simulation as a whole: determinism, GPU-hours, cold starts, scale to zero and back, the sweep."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.engine import SimulationSettings, simulate
from tessera_operator.simulator.policies import POLICIES, PolicyContext
from tessera_operator.simulator.policies.base import PolicySpec
from tessera_operator.simulator.policies.static import StaticPolicy
from tessera_operator.simulator.profile import PROFILES
from tessera_operator.simulator.results import SimulationResult, Timeline
from tessera_operator.simulator.run import run_policy
from tessera_operator.simulator.sweep import sweep_policy
from tessera_operator.simulator.trace import Trace, scale_rate, synthetic_trace

PROFILE = PROFILES["llama-3.1-8b-h100"]


def _poisson(rate: float, start: float, end: float, rng: random.Random) -> list[float]:
    moments: list[float] = []
    moment = start
    while True:
        moment += rng.expovariate(rate)
        if moment >= end:
            return moments
        moments.append(moment)


def _trace(arrivals: list[float], seed: int = 0) -> Trace:
    rng = random.Random(seed)
    return Trace(
        tuple(arrivals),
        tuple(rng.randint(200, 2000) for _ in arrivals),
        tuple(rng.randint(20, 300) for _ in arrivals),
    )


def test_same_seed_same_figures() -> None:
    trace = scale_rate(synthetic_trace("bursty-chat", seed=5, duration_seconds=600), 4, seed=1)
    context = PolicyContext(trace=trace, profile=PROFILE)
    first = simulate(trace, POLICIES["tessera"].build(context, 0.35), PROFILE)
    second = simulate(trace, POLICIES["tessera"].build(context, 0.35), PROFILE)
    assert first.figures() == second.figures()
    assert first.timeline == second.timeline


def test_a_static_fleet_costs_its_size_times_the_duration() -> None:
    trace = _trace(_poisson(5.0, 0.0, 600.0, random.Random(2)))
    context = PolicyContext(trace=trace, profile=PROFILE)
    result = simulate(trace, StaticPolicy(context, 3), PROFILE)
    assert result.gpu_hours == pytest.approx(3 * result.duration_seconds / 3600)
    assert result.replica_changes_per_hour == 0
    assert result.slo_attainment > 0.99  # light load on three replicas
    assert result.rejected_requests == 0


class _Scripted:
    """A policy that asks for replica counts on a timetable."""

    sample_seconds = 5.0

    def __init__(self, timetable: Callable[[float], int]):
        self.timetable = timetable
        self.seen: list[Observation] = []

    def on_sample(self, observation: Observation) -> int:
        self.seen.append(observation)
        return self.timetable(observation.time_seconds)

    def reason(self) -> str:
        return "scripted"


def test_new_replicas_serve_only_after_their_cold_start() -> None:
    trace = _trace(_poisson(10.0, 0.0, 400.0, random.Random(3)))
    policy = _Scripted(lambda now: 1 if now < 100 else 3)
    result = simulate(trace, policy, PROFILE, SimulationSettings(initial_replicas=1))
    before_ready = [o for o in policy.seen if 100 < o.time_seconds < 100 + PROFILE.cold_start_seconds]
    after_ready = [o for o in policy.seen if o.time_seconds > 100 + PROFILE.cold_start_seconds + 5]
    assert before_ready and all(o.replicas == 3 and o.ready_replicas == 1 for o in before_ready)
    assert all(o.loading_replicas == 2 for o in before_ready)
    assert after_ready and all(o.ready_replicas == 3 for o in after_ready)
    # Loading replicas hold their GPUs: 1 replica for 100 s, then 3 until the end.
    expected = (100 + 3 * (result.duration_seconds - 100)) / 3600
    assert result.gpu_hours == pytest.approx(expected, abs=6 / 3600)
    assert result.replica_changes_per_hour == pytest.approx(1 / (result.duration_seconds / 3600))


def test_idle_model_goes_to_zero_and_its_next_request_waits_and_succeeds() -> None:
    rng = random.Random(4)
    arrivals = [*_poisson(4.0, 0.0, 120.0, rng), 1500.0, *_poisson(4.0, 1500.0, 1560.0, rng)]
    trace = _trace(arrivals)
    context = PolicyContext(trace=trace, profile=PROFILE, scale_to_zero_after_seconds=300)
    result = simulate(trace, POLICIES["tessera"].build(context, 0.35), PROFILE)
    timeline = result.timeline
    idle = [n for t, n in zip(timeline.times, timeline.replicas, strict=True) if 500 < t < 1490]
    assert idle and max(idle) == 0  # scaled to zero while idle
    assert result.rejected_requests == 0  # the first request after the gap was held, then served
    assert result.ttft_p99_seconds >= PROFILE.cold_start_seconds - 1  # it waited for a cold start
    assert max(timeline.replicas) >= 1


def test_requests_held_longer_than_the_hold_timeout_are_rejected() -> None:
    trace = _trace([10.0, 11.0, 12.0])
    policy = _Scripted(lambda now: 0)
    result = simulate(trace, policy, PROFILE, SimulationSettings(initial_replicas=0, hold_timeout_seconds=30))
    assert result.rejected_requests == 3
    assert result.slo_attainment == 0.0
    assert math.isnan(result.ttft_p50_seconds)


def _fake(gpu_hours: float, attainment: float) -> SimulationResult:
    return SimulationResult(
        gpu_hours, attainment, 0.1, 0.1, 0.2, 0.3, 0.02, 1.0, 0, 100, 3600.0, 4, Timeline()
    )


def test_sweep_keeps_the_cheapest_setting_that_reaches_the_goal() -> None:
    spec = PolicySpec("toy", StaticPolicy, "target", 50, sweep=(10, 20, 30, 40, 50, 60, 70, 80))
    calls: list[float] = []

    def evaluate(value: float) -> SimulationResult:
        calls.append(value)
        return _fake(gpu_hours=100 / value, attainment=0.999 if value <= 45 else 0.95)

    outcome = sweep_policy(spec, evaluate)
    assert outcome.setting == 40 and outcome.reached_goal
    assert len(calls) < len(spec.sweep)  # bisection, not the whole grid


def test_sweep_flags_a_policy_that_never_reaches_the_goal() -> None:
    spec = PolicySpec("toy", StaticPolicy, "replicas", 2, sweep=(1, 2, 3, 4), larger_is_leaner=False)
    outcome = sweep_policy(spec, lambda value: _fake(value, 0.9 + value / 100))
    assert not outcome.reached_goal
    assert outcome.setting == 4  # the best attainment it found


def test_the_warm_up_is_left_out_of_the_figures() -> None:
    trace = _trace(_poisson(6.0, 0.0, 900.0, random.Random(6)))
    result = run_policy(POLICIES["static"], 2, trace, PROFILE, warmup_seconds=300)
    assert result.requests == len(trace)
    assert result.duration_seconds == pytest.approx(trace.duration_seconds, abs=30)
    assert result.gpu_hours == pytest.approx(2 * result.duration_seconds / 3600)
    assert result.timeline.times[0] > 0 and result.timeline.times[-1] <= result.duration_seconds + 10
