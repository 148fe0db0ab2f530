"""Headroom that follows the load: rises of the request rate within a reaction time, and scale-downs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tessera_operator.autoscaling import Observation, PodSample, PolicyConfig, PolicyState, decide
from tessera_operator.autoscaling.variability import (
    observe_rise,
    reaction_seconds,
    record_rise,
    rise_factor,
    scale_down_factor,
)

CONFIG = PolicyConfig(max_replicas=20, cold_start_seconds=90, unloaded_tpot_seconds=0.0065)
STEP = CONFIG.interval_seconds


def series(rate_at: Callable[[float], float], seconds: float, start: float = 0.0) -> list[tuple[float, float]]:
    """(time, value) every interval from `start` for `seconds`, the value from `rate_at(time)`."""
    count = int(seconds / STEP)
    return [(start + STEP * (index + 1), rate_at(start + STEP * (index + 1))) for index in range(count)]


def test_a_level_load_has_no_rise_and_a_jump_shows_its_height() -> None:
    level = series(lambda moment: 50.0, 900)
    assert observe_rise(level, level[-1][0], CONFIG) == pytest.approx(1.0)
    jump_at = 900 - reaction_seconds(CONFIG) / 2
    jumped = series(lambda moment: 100.0 if moment > jump_at else 50.0, 900)
    assert observe_rise(jumped, jumped[-1][0], CONFIG) == pytest.approx(2.0)


def test_a_dip_and_its_recovery_within_the_scale_down_delay_is_not_a_rise() -> None:
    # The rate halves for a minute and comes back: the fleet was never scaled down, so nothing rose.
    now = 900.0
    dip_start = now - reaction_seconds(CONFIG) - 60
    dipped = series(lambda moment: 25.0 if dip_start < moment <= dip_start + 60 else 50.0, now)
    rise = observe_rise(dipped, now, CONFIG)
    assert rise is not None and rise == pytest.approx(1.0, abs=0.05)


def test_too_short_a_history_or_no_load_records_nothing() -> None:
    assert observe_rise(series(lambda moment: 50.0, 60), 60, CONFIG) is None
    assert observe_rise(series(lambda moment: 0.0, 900), 900, CONFIG) is None


def test_rises_are_recorded_every_so_often_and_forgotten_after_the_window() -> None:
    points = series(lambda moment: 50.0, 900)
    rises: tuple[tuple[float, float], ...] = ()
    for now in range(600, 900, int(STEP)):
        rises = record_rise(rises, [p for p in points if p[0] <= now], float(now), CONFIG)
    assert len(rises) == 300 / CONFIG.rise_every_seconds
    later = record_rise(rises, points, 600 + CONFIG.variability_window_seconds + 1, CONFIG)
    assert all(moment > 601 for moment, _ in later)


def test_the_factor_is_the_default_until_enough_rises_then_their_quantile() -> None:
    few = tuple((float(index), 3.0) for index in range(CONFIG.variability_min_rises - 1))
    assert rise_factor(few, CONFIG) == CONFIG.default_rise
    rises = tuple((float(index), 1.0 + index / 10) for index in range(20))
    assert rise_factor(rises, CONFIG) == pytest.approx(2.9)  # quantile 1: the largest
    median = PolicyConfig(unloaded_tpot_seconds=0.0065, rise_quantile=0.5)
    assert rise_factor(rises, median) == pytest.approx(1.9)
    assert rise_factor(tuple((float(i), 0.5) for i in range(20)), CONFIG) == 1.0  # falls do not shrink


def test_the_scale_down_keeps_at_least_the_hysteresis_and_room_for_a_large_rise() -> None:
    assert scale_down_factor(1.0, 0.6, 0.75, CONFIG) == pytest.approx(1 + CONFIG.scale_down_headroom)
    assert scale_down_factor(2.5, 0.6, 0.75, CONFIG) == pytest.approx(2.0)


def fleet_observation(now: float, replicas: int, rate: float, work: float = 2.5) -> Observation:
    """A fleet whose pods carry `work` replicas' worth of load at 60% utilisation, whatever the rate."""
    tpot = 0.0065 / (1 - min(0.95, work * 0.6 / replicas))
    pods = tuple(PodSample(ready=True, name=f"pod-{i}", running=20, kv_cache_usage=0.1, tpot_seconds=tpot)
                 for i in range(replicas))
    return Observation(now, replicas, replicas, 0, router_in_flight=20 * replicas, request_rate=rate, pods=pods)


def run_fleet(rate_at: Callable[[float], float], seconds: float) -> tuple[int, str]:
    """Replicas (ready at once) after `seconds` of decisions, and the last reason: 15 minutes of a load
    that keeps all 8, then a third of it."""
    state, replicas, reason = PolicyState(), 8, ""
    for index in range(int(seconds / STEP)):
        now = STEP * (index + 1)
        observation = fleet_observation(now, replicas, rate_at(now), work=7.5 if now <= 900 else 2.5)
        decision, state = decide(state, observation, CONFIG)
        replicas, reason = decision.desired_replicas, decision.reason
    return replicas, reason


def test_a_spiky_rate_keeps_more_replicas_after_a_scale_down_than_a_level_one() -> None:
    level, _ = run_fleet(lambda moment: 40.0 if moment > 900 else 120.0, 1800)
    # The same busy time, but the request rate triples for 20 s every 3 minutes (pods saturated).
    spiky, reason = run_fleet(lambda moment: (120.0 if moment % 180 < 20 else 40.0) * (3 if moment <= 900 else 1), 1800)
    assert level < 8 and spiky > level
    assert "keeps room for the" in reason and "rise in request rate" in reason


def test_the_rises_survive_a_round_trip_through_status() -> None:
    state = PolicyState()
    for index in range(200):
        now = STEP * (index + 1)
        _, state = decide(state, fleet_observation(now, 6, 120.0 if now % 180 < 20 else 40.0), CONFIG)
    assert state.rises
    restored = PolicyState.from_dict(state.to_dict())
    assert restored.rises == tuple((round(t, 3), round(r, 4)) for t, r in state.rises)
    assert [s.request_rate for s in restored.samples] == [round(s.request_rate, 3) for s in state.samples]


def steady_fleet(replicas: int, work_at: Callable[[float], float], seconds: float) -> list[int]:
    """Replicas after each decision for a fleet whose pods are ready at once and never saturate."""
    state, counts = PolicyState(), []
    for index in range(int(seconds / STEP)):
        now = STEP * (index + 1)
        work = work_at(now)
        observation = fleet_observation(now, replicas, 20.0 * work, work=work)
        decision, state = decide(state, observation, CONFIG)
        replicas = decision.desired_replicas
        counts.append(replicas)
    return counts


def test_a_plan_just_over_the_fleet_stays_within_the_tolerance_band() -> None:
    # fleet_observation runs `work` replicas' worth at 60% utilisation; the plan is work * 0.6 / target.
    target = 1 - 0.0065 / (CONFIG.tpot_target_fraction * CONFIG.tpot_slo_seconds)
    inside = 5 * (1 + CONFIG.scale_up_tolerance / 2) * target / 0.6
    outside = 5 * (1 + CONFIG.scale_up_tolerance * 2) * target / 0.6
    assert set(steady_fleet(5, lambda moment: inside, 900)) == {5}
    assert max(steady_fleet(5, lambda moment: outside, 900)) >= 6


def test_a_dip_that_is_over_does_not_scale_the_fleet_down() -> None:
    # Six replicas' worth, a 200 s dip to a third, then back: the stable mean still remembers the dip
    # when the stabilization ends, but the burst window shows the load is back.
    target = 1 - 0.0065 / (CONFIG.tpot_target_fraction * CONFIG.tpot_slo_seconds)
    level = 6 * target / 0.6
    counts = steady_fleet(7, lambda moment: level / 3 if 900 < moment <= 1100 else level, 1800)
    assert min(counts) >= 6
