"""The peers' policies follow their published rules; the oracle stays a cold start ahead of need."""

from __future__ import annotations

import random

from tessera_operator.autoscaling.observation import Observation, PodSample
from tessera_operator.simulator.capacity import replicas_for_work, work_per_bucket
from tessera_operator.simulator.policies import POLICIES, PolicyContext
from tessera_operator.simulator.policies.aibrix import AIBrixPolicy
from tessera_operator.simulator.policies.hpa import HpaPolicy
from tessera_operator.simulator.policies.knative import KnativePolicy
from tessera_operator.simulator.policies.kubeai import KubeAIPolicy
from tessera_operator.simulator.policies.llmd import LlmdPolicy
from tessera_operator.simulator.policies.oracle import OraclePolicy
from tessera_operator.simulator.profile import PROFILES
from tessera_operator.simulator.trace import Trace

PROFILE = PROFILES["llama-3.1-8b-h100"]
CONTEXT = PolicyContext(trace=Trace((0.0,), (10,), (10,)), profile=PROFILE, max_replicas=64)


def observe(
    now: float, replicas: int, in_flight: int, loading: int = 0, kv: float = 0.2, waiting: float = 0.0
) -> Observation:
    ready = replicas - loading
    pods = tuple(
        PodSample(ready=True, name=f"p{i}", running=in_flight / max(1, ready), waiting=waiting, kv_cache_usage=kv)
        for i in range(ready)
    ) + tuple(PodSample(ready=False, name=f"l{i}") for i in range(loading))
    return Observation(now, replicas, ready, loading, router_in_flight=in_flight, pods=pods)


def test_every_policy_is_registered_with_a_sweep() -> None:
    assert set(POLICIES) == {"tessera", "kubeai", "knative", "hpa", "aibrix", "llmd", "static", "oracle"}
    for spec in POLICIES.values():
        assert spec.sweep and spec.setting_name


def test_kubeai_averages_and_scales_down_after_three_lower_readings() -> None:
    policy = KubeAIPolicy(CONTEXT, target_requests=100)
    assert policy.on_sample(observe(10, 1, 250)) == 3  # average 250 -> ceil(2.5); up at once
    answers = [policy.on_sample(observe(20 + 10 * i, 3, 0)) for i in range(8)]
    # The 10-minute average falls slowly; each drop needs 3 consecutive lower readings.
    assert answers[:2] == [3, 3]
    assert answers[2] == 1  # average 250/4 = 62.5 -> 1, on the third lower reading
    assert 0 not in answers  # zero only when every one of the 60 samples is zero


def test_hpa_ignores_changes_within_tolerance_and_stabilizes_scale_down() -> None:
    policy = HpaPolicy(CONTEXT, target_per_replica=10)
    assert policy.on_sample(observe(15, 4, 42)) == 4  # 42 / (10 x 4) = 1.05: within 10%
    assert policy.on_sample(observe(30, 4, 90)) == 8  # up: 9 wanted, capped at 2x (100%) / +4 pods
    answers = [policy.on_sample(observe(45 + 15 * i, 8, 20)) for i in range(25)]
    assert answers[0] == 9 and max(answers[:19]) == 9  # the highest recommendation of 300 s holds
    assert answers[-1] == 2


def test_knative_panics_at_twice_the_ready_pods_and_holds_the_panic_peak() -> None:
    policy = KnativePolicy(CONTEXT, target_per_pod=10)
    for second in range(60):
        policy.on_sample(observe(second, 2, 15))
    answers = [policy.on_sample(observe(60 + second, 2, 60)) for second in range(8)]
    assert max(answers) >= 6  # 60 in flight / 10 per pod; panic since 6 / 2 >= 2
    calm = [policy.on_sample(observe(68 + second, 6, 10, loading=4)) for second in range(20)]
    assert min(calm) >= max(answers)  # never below the panic peak while panicking


def test_aibrix_doubles_at_most_and_its_pending_guard_stops_the_runaway() -> None:
    guarded = AIBrixPolicy(CONTEXT, target_usage=0.5)
    assert guarded.on_sample(observe(10, 2, 50, kv=1.0)) == 4  # r = 2: ceil(2 x 2), capped at 2N
    assert guarded.on_sample(observe(20, 4, 50, loading=2, kv=1.0)) == 4  # held while pods load
    unguarded = AIBrixPolicy(CONTEXT, target_usage=0.5, pending_guard=False)
    replicas = 2
    for step in range(3):  # the ready pods stay saturated while new ones load (aibrix#2670)
        replicas = unguarded.on_sample(observe(10 * (step + 1), replicas, 50, loading=replicas - 2, kv=1.0))
    assert replicas == 16


def test_llmd_adds_one_replica_when_spare_kv_runs_low_and_holds_while_loading() -> None:
    policy = LlmdPolicy(CONTEXT, kv_saturation=0.8)
    calm = [policy.on_sample(observe(15 * i, 3, 30, kv=0.55)) for i in range(20)]
    assert set(calm) == {3}
    answers = [policy.on_sample(observe(300 + 15 * i, 3, 30, kv=0.75)) for i in range(20)]
    first_up = answers.index(4)
    assert 15 * (first_up + 1) >= 240  # 240 s after the last lower recommendation (HPA stabilization)
    assert max(answers) == 4  # +1 per cycle, never more
    held = LlmdPolicy(CONTEXT, kv_saturation=0.8)
    assert all(held.on_sample(observe(15 * i, 3, 30, loading=1, kv=0.75)) == 3 for i in range(20))


def test_oracle_keeps_what_the_next_cold_start_needs() -> None:
    rng = random.Random(3)
    arrivals = sorted([rng.uniform(0, 600) for _ in range(3000)] + [rng.uniform(300, 360) for _ in range(6000)])
    trace = Trace(tuple(arrivals), (1000,) * len(arrivals), (200,) * len(arrivals))
    context = PolicyContext(trace=trace, profile=PROFILE)
    oracle = OraclePolicy(context, 0.7)
    need = [replicas_for_work(work, 0.7) for work in work_per_bucket(trace, PROFILE, 60)]
    peak_minute = need.index(max(need))
    assert peak_minute == 5
    start = peak_minute * 60 - PROFILE.cold_start_seconds  # ready exactly when the busy minute begins
    assert oracle.on_sample(observe(start - 30, 1, 10)) < max(need)
    assert oracle.on_sample(observe(start, 1, 10)) == max(need)
    assert oracle.on_sample(observe(peak_minute * 60 + 61, 1, 10)) < max(need)
