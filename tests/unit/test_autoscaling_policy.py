"""Tessera's autoscaling policy on synthetic series: steady, burst, idle, cold start, flapping, zero."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from tessera_operator.autoscaling import Decision, Observation, PodSample, PolicyConfig, PolicyState, decide

T0 = 0.0065  # seconds: the per-step fixed cost of the default profile
CONFIG = PolicyConfig(
    min_replicas=0,
    max_replicas=20,
    scale_to_zero_after_seconds=600,
    cold_start_seconds=90,
    unloaded_tpot_seconds=T0,
)
# Busy replicas one replica carries at the policy's target: steps of 35% of the 50 ms TPOT SLO.
TARGET_UTILISATION = 1 - T0 / (CONFIG.tpot_target_fraction * CONFIG.tpot_slo_seconds)


def observe(
    now: float,
    replicas: int,
    busy: float,
    loading: int = 0,
    held: int = 0,
    rate: float | None = None,
    kv: float = 0.1,
) -> Observation:
    """A fleet whose ready pods share `busy` replicas' worth of load evenly."""
    ready = replicas - loading
    pods = []
    for index in range(ready):
        share = min(0.99, busy / ready) if ready else 0.0
        tpot = T0 / (1 - share) if share > 0 else None
        running = 40.0 if share > 0 else 0.0
        pods.append(PodSample(ready=True, name=f"pod-{index}", running=running, kv_cache_usage=kv, tpot_seconds=tpot))
    pods.extend(PodSample(ready=False, name=f"new-{index}") for index in range(loading))
    active = busy > 0 or held > 0
    return Observation(
        time_seconds=now,
        replicas=replicas,
        ready_replicas=ready,
        loading_replicas=loading,
        router_in_flight=int(40 * ready) if busy > 0 else 0,
        router_held=held,
        request_rate=(rate if rate is not None else busy * 20.0) if active else 0.0,
        pods=tuple(pods),
    )


class Fleet:
    """Applies decisions like a Deployment would: new replicas load for the cold start, then serve."""

    def __init__(self, replicas: int, start: float = 0.0, config: PolicyConfig = CONFIG):
        self.config = config
        self.now = start
        self.ready = replicas
        self.loading: list[float] = []
        self.state = PolicyState()
        self.decisions: list[Decision] = []
        self.changes = 0

    @property
    def replicas(self) -> int:
        return self.ready + len(self.loading)

    def step(self, busy: float, held: int = 0, kv: float = 0.1) -> Decision:
        self.now += self.config.interval_seconds
        arrived = [moment for moment in self.loading if moment <= self.now]
        self.loading = [moment for moment in self.loading if moment > self.now]
        self.ready += len(arrived)
        observation = observe(self.now, self.replicas, busy, len(self.loading), held=held, kv=kv)
        decision, self.state = decide(self.state, observation, self.config)
        self.decisions.append(decision)
        wanted = decision.desired_replicas
        if wanted != self.replicas:
            self.changes += 1
        while wanted > self.replicas:
            self.loading.append(self.now + self.config.cold_start_seconds)
        while wanted < self.replicas:
            if self.loading:
                self.loading.pop()
            else:
                self.ready -= 1
        return decision

    def run(self, seconds: float, busy: float, noise: float = 0.0, seed: int = 0, **kw: float) -> None:
        rng = random.Random(seed)
        for _ in range(int(seconds / CONFIG.interval_seconds)):
            self.step(max(0.0, busy * (1 + rng.uniform(-noise, noise))), **kw)  # type: ignore[arg-type]


def test_steady_load_keeps_the_fleet_that_fits_it() -> None:
    fleet = Fleet(replicas=6)
    busy = 4.0 * TARGET_UTILISATION  # four replicas' worth at target
    fleet.run(1800, busy, noise=0.05)
    assert fleet.replicas == 5  # four at target, plus the scale-down headroom's one
    assert fleet.changes <= 1


def test_burst_scales_up_within_the_fast_window() -> None:
    fleet = Fleet(replicas=4)
    fleet.run(600, 3.0 * TARGET_UTILISATION)
    before = fleet.replicas
    for _ in range(int(CONFIG.fast_window_seconds / CONFIG.interval_seconds)):
        fleet.step(6.0 * TARGET_UTILISATION)
    assert fleet.replicas >= 6 > before
    assert "Scale up" in next(d.reason for d in fleet.decisions if d.desired_replicas > before)


def test_loading_replicas_count_so_a_cold_start_does_not_over_scale() -> None:
    fleet = Fleet(replicas=3)
    fleet.run(600, 2.5 * TARGET_UTILISATION)
    # The load jumps to what 6 replicas carry; the 3 ready pods saturate while new ones load.
    peak = 0
    for _ in range(int(2 * CONFIG.cold_start_seconds / CONFIG.interval_seconds)):
        fleet.step(6.0 * TARGET_UTILISATION)
        peak = max(peak, fleet.replicas)
    assert 6 <= peak <= 7  # AIBrix-style runaway (3 -> 6 -> 12) would exceed this
    ups = [d for d in fleet.decisions if "Scale up" in d.reason]
    assert len(ups) <= 2


def test_scale_down_waits_for_the_stabilization_window_then_goes_in_one_step() -> None:
    fleet = Fleet(replicas=8)
    fleet.run(600, 7.0 * TARGET_UTILISATION)
    assert fleet.replicas == 8
    drop_at = fleet.now
    fleet.run(CONFIG.scale_down_delay_seconds / 2, 2.0 * TARGET_UTILISATION)
    assert fleet.replicas == 8  # still inside the stabilization window
    fleet.run(CONFIG.scale_down_delay_seconds + CONFIG.stable_window_seconds, 2.0 * TARGET_UTILISATION)
    assert fleet.replicas == 3
    downs = [d for d in fleet.decisions if "Scale down" in d.reason]
    assert len(downs) == 1
    first_down = fleet.decisions.index(downs[0])
    assert CONFIG.interval_seconds * (first_down + 1) - 600 >= CONFIG.scale_down_delay_seconds
    assert drop_at > 0


def test_noisy_load_near_a_boundary_does_not_flap() -> None:
    fleet = Fleet(replicas=5)
    busy = 4.0 * TARGET_UTILISATION  # exactly four replicas' worth, +-10% noise around the boundary
    fleet.run(3600, busy, noise=0.10, seed=7)
    assert fleet.changes <= 2


def test_idle_goes_to_zero_after_scale_to_zero_after_and_not_before() -> None:
    fleet = Fleet(replicas=2)
    fleet.run(300, 1.0 * TARGET_UTILISATION)
    fleet.run(CONFIG.scale_to_zero_after_seconds - 30, 0.0)
    assert fleet.replicas >= 1
    fleet.run(60, 0.0)
    assert fleet.replicas == 0
    assert "Scale to zero" in next(d.reason for d in fleet.decisions if d.desired_replicas == 0)


def test_a_held_request_scales_from_zero_at_once() -> None:
    state = PolicyState()
    quiet = observe(0.0, 0, 0.0)
    decision, state = decide(state, quiet, CONFIG)
    assert decision.desired_replicas == 0
    held = observe(5.0, 0, 0.0, held=1, rate=0.2)
    decision, state = decide(state, held, CONFIG)
    assert decision.desired_replicas == 1
    assert "holds 1 request " in decision.reason


def test_min_replicas_keeps_a_floor_and_max_replicas_a_ceiling() -> None:
    config = PolicyConfig(min_replicas=2, max_replicas=4, unloaded_tpot_seconds=T0)
    fleet = Fleet(replicas=3, config=config)
    fleet.run(1200, 0.0)
    assert fleet.replicas == 2  # idle, but never under the floor
    fleet.run(300, 20.0)
    assert fleet.replicas == 4  # far more load than 4 carry, but never over the ceiling


def test_kv_cache_pressure_scales_up_even_when_steps_are_fast() -> None:
    fleet = Fleet(replicas=2)
    for _ in range(12):
        fleet.step(0.2, kv=0.95)  # little compute, but the caches are nearly full
    assert fleet.replicas >= 3


def test_decide_is_pure_and_its_state_serialises() -> None:
    state = PolicyState()
    for step in range(40):
        _, state = decide(state, observe(step * 5.0, 4, 2.0), CONFIG)
    observation = observe(205.0, 4, 3.5)
    first = decide(state, observation, CONFIG)
    second = decide(state, observation, CONFIG)
    assert first == second
    data = json.loads(json.dumps(state.to_dict()))
    assert PolicyState.from_dict(data).to_dict() == state.to_dict()
    restored = decide(PolicyState.from_dict(data), observation, CONFIG)
    assert restored[0].desired_replicas == first[0].desired_replicas


def test_without_a_configured_step_cost_the_policy_learns_it_from_the_pods() -> None:
    config = PolicyConfig(max_replicas=20, unloaded_tpot_seconds=None)
    state = PolicyState()
    decide_light = observe(0.0, 3, 0.05)
    _, state = decide(state, decide_light, config)
    assert state.unloaded_tpot_seconds is not None
    assert state.unloaded_tpot_seconds == pytest.approx(T0 / (1 - 0.05 / 3))


@pytest.mark.parametrize(
    "values",
    [
        {"min_replicas": 3, "max_replicas": 2},
        {"tpot_target_fraction": 1.2},
        {"kv_cache_target": 0.0},
        {"interval_seconds": 0.0},
        {"max_scale_downs_per_hour": 0},
    ],
)
def test_config_refuses_nonsense(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PolicyConfig(**values)  # type: ignore[arg-type]


def _swinging(config: PolicyConfig) -> tuple[Fleet, list[float]]:
    """Two hours of a load that swings every 15 minutes between 7 and 2 replicas' worth; the times
    of the fleet's scale-downs."""
    fleet = Fleet(replicas=8, config=config)
    for _ in range(8):
        fleet.run(300, 7.0 * TARGET_UTILISATION)
        fleet.run(600, 2.0 * TARGET_UTILISATION)
    downs = [
        (index + 1) * config.interval_seconds
        for index, decision in enumerate(fleet.decisions)
        if decision.reason.startswith("Scale down")
    ]
    return fleet, downs


def test_scale_downs_are_limited_per_hour_and_scale_ups_are_not() -> None:
    unlimited, free_downs = _swinging(dataclasses.replace(CONFIG, max_scale_downs_per_hour=None))
    assert len(free_downs) >= 7  # one per swing: four an hour
    limited, downs = _swinging(CONFIG)
    assert CONFIG.max_scale_downs_per_hour == 3
    assert max(sum(1 for t in downs if start <= t < start + 3600) for start in downs) <= 3
    assert len(downs) >= 5  # it still scales down, once the oldest of the hour's three is an hour old
    held = [d.reason for d in limited.decisions if "maxScaleDownsPerHour 3" in d.reason]
    assert held and held[0].startswith("Hold 8") and "scaled down 3 times in the last hour" in held[0]
    # Every swing up is still followed: the peaks get their replicas.
    ups = [d for d in limited.decisions if d.reason.startswith("Scale up")]
    assert len(ups) >= len(downs) - 1
    assert limited.changes < unlimited.changes
    restored = PolicyState.from_dict(json.loads(json.dumps(limited.state.to_dict())))
    assert restored.scale_down_times == limited.state.scale_down_times != ()
