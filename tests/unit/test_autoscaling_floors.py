"""The queue and concurrency floors of Tessera's policy (spec.autoscaling.targets.queuePerReplica and
concurrencyPerReplica): each is a replica count the fleet may not go under, next to the load's own."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tessera_operator.autoscaling import Decision, Observation, PodSample, PolicyConfig, PolicyState, decide

T0 = 0.0065
BASE = PolicyConfig(min_replicas=0, max_replicas=20, cold_start_seconds=90, unloaded_tpot_seconds=T0)


def fleet_of(
    now: float,
    ready: int,
    running: float,
    waiting: float,
    loading: int = 0,
    tpot: float = 0.009,
) -> Observation:
    """`ready` pods with light engine steps (`tpot`) holding `running` and `waiting` requests each."""
    pods = [
        PodSample(ready=True, name=f"pod-{index}", running=running, waiting=waiting, kv_cache_usage=0.1,
                  tpot_seconds=tpot)
        for index in range(ready)
    ]
    pods.extend(PodSample(ready=False, name=f"new-{index}") for index in range(loading))
    return Observation(
        time_seconds=now,
        replicas=ready + loading,
        ready_replicas=ready,
        loading_replicas=loading,
        router_in_flight=int((running + waiting) * ready),
        request_rate=10.0,
        pods=tuple(pods),
    )


def run(config: PolicyConfig, seconds: float, ready: int, running: float, waiting: float) -> list[Decision]:
    """Feed the same fleet for `seconds`; replicas asked for are applied at once (no cold start here)."""
    state = PolicyState()
    decisions = []
    for step in range(int(seconds / config.interval_seconds)):
        decision, state = decide(state, fleet_of(step * config.interval_seconds, ready, running, waiting), config)
        decisions.append(decision)
    return decisions


def test_without_targets_a_short_queue_on_light_steps_does_not_scale() -> None:
    decisions = run(BASE, 60, ready=2, running=10, waiting=1)
    assert all(decision.desired_replicas == 2 for decision in decisions)


def test_queue_floor_scales_to_the_waiting_requests_over_the_target() -> None:
    config = replace(BASE, queue_per_replica=4.0)
    decisions = run(config, 60, ready=2, running=10, waiting=12)  # 24 waiting: 6 replicas at 4 each
    assert max(decision.desired_replicas for decision in decisions) == 6
    first_up = next(decision for decision in decisions if decision.desired_replicas > 2)
    assert "Scale up from 2 to 6" in first_up.reason
    assert "queuePerReplica 4" in first_up.reason


def test_a_zero_queue_target_asks_for_one_more_replica_per_waiting_queue() -> None:
    config = replace(BASE, queue_per_replica=0.0)
    decisions = run(config, 60, ready=3, running=10, waiting=1)
    assert max(decision.desired_replicas for decision in decisions) == 4


def test_concurrency_floor_scales_to_running_and_waiting_over_the_target() -> None:
    config = replace(BASE, concurrency_per_replica=16.0)
    decisions = run(config, 60, ready=2, running=30, waiting=2)  # 64 in flight: 4 replicas at 16 each
    assert max(decision.desired_replicas for decision in decisions) == 4
    first_up = next(decision for decision in decisions if decision.desired_replicas > 2)
    assert "concurrencyPerReplica 16" in first_up.reason
    # Without the target, the same light steps need no more than the two there are.
    assert max(decision.desired_replicas for decision in run(BASE, 60, 2, 30, 2)) == 2


def test_floors_do_not_over_scale_while_replicas_load() -> None:
    config = replace(BASE, queue_per_replica=2.0, concurrency_per_replica=16.0)
    state = PolicyState()
    # Two ready pods, four more loading; the queue keeps growing until they are ready.
    desired = []
    for step in range(18):
        observation = fleet_of(step * 5.0, 2, running=30, waiting=10 + 5 * step, loading=4)
        decision, state = decide(state, observation, config)
        desired.append(decision.desired_replicas)
    assert max(desired) == 6  # the replicas on their way are counted: no runaway while they load


def test_floors_stay_under_max_replicas_and_need_positive_targets() -> None:
    config = replace(BASE, max_replicas=5, queue_per_replica=1.0)
    decisions = run(config, 60, ready=2, running=10, waiting=40)
    assert max(decision.desired_replicas for decision in decisions) == 5
    with pytest.raises(ValueError):
        PolicyConfig(queue_per_replica=-1.0)
    with pytest.raises(ValueError):
        PolicyConfig(concurrency_per_replica=0.0)


def test_the_floor_is_remembered_and_older_state_without_it_still_reads() -> None:
    config = replace(BASE, queue_per_replica=4.0)
    _, state = decide(PolicyState(), fleet_of(0.0, 2, running=10, waiting=12), config)
    assert state.samples[-1].floor_replicas == pytest.approx(6.0)
    restored = PolicyState.from_dict(state.to_dict())
    assert restored.to_dict() == state.to_dict() and restored.samples[-1].floor_replicas == pytest.approx(6.0)
    older = PolicyState.from_dict({"samples": [[1.0, 0.5, 0.1, 2]]})
    assert older.samples[0].floor_replicas == 0.0 and older.samples[0].recommendation == 2
