"""The simulator's replica model against closed forms and against a naive step-by-step reference."""

from __future__ import annotations

import math
import random
from collections import deque

import pytest

from tessera_operator.simulator.engine import SimulationSettings, simulate
from tessera_operator.simulator.policies.base import PolicyContext
from tessera_operator.simulator.policies.static import StaticPolicy
from tessera_operator.simulator.profile import ReplicaProfile
from tessera_operator.simulator.replica import Replica, RequestLog
from tessera_operator.simulator.trace import Trace


def _one_replica(trace: Trace, profile: ReplicaProfile) -> tuple[float, float]:
    context = PolicyContext(trace=trace, profile=profile)
    result = simulate(trace, StaticPolicy(context, 1), profile, SimulationSettings())
    return result.ttft_mean_seconds, result.tpot_p99_seconds


def test_single_server_with_deterministic_service_matches_m_d_1() -> None:
    # Each request is a 1,000-token prompt with one output token and the step budget fits exactly one
    # prompt, so the replica is a FIFO single server with a deterministic 10 ms service time: M/D/1.
    service = 0.010
    profile = ReplicaProfile(
        name="md1",
        step_overhead_seconds=0.005,
        prefill_seconds_per_token=5e-6,
        seconds_per_sequence=0.0,
        seconds_per_kv_token=0.0,
        max_batched_tokens=1000,
    )
    utilisation = 0.6
    rate = utilisation / service
    rng = random.Random(11)
    arrivals: list[float] = []
    moment = 0.0
    for _ in range(40_000):
        moment += rng.expovariate(rate)
        arrivals.append(moment)
    trace = Trace(tuple(arrivals), (1000,) * len(arrivals), (1,) * len(arrivals))
    mean_ttft, _ = _one_replica(trace, profile)
    # Pollaczek-Khinchine for deterministic service: Wq = rho * D / (2 (1 - rho)); TTFT = Wq + D.
    expected = utilisation * service / (2 * (1 - utilisation)) + service
    assert mean_ttft == pytest.approx(expected, rel=0.05)


def test_one_request_decodes_in_the_closed_form_time() -> None:
    profile = ReplicaProfile(name="lone")
    prompt, generated = 700, 50
    trace = Trace((0.0,), (prompt,), (generated,))
    mean_ttft, tpot = _one_replica(trace, profile)
    first_step = profile.step_overhead_seconds + profile.prefill_seconds_per_token * prompt + profile.seconds_per_sequence
    decode = sum(
        profile.step_overhead_seconds + profile.seconds_per_sequence + profile.seconds_per_kv_token * (prompt + 1 + k)
        for k in range(generated - 1)
    )
    assert mean_ttft == pytest.approx(first_step, rel=1e-9)
    assert tpot == pytest.approx(decode / (generated - 1), rel=1e-9)


def _reference(trace: Trace, profile: ReplicaProfile) -> tuple[list[float], list[float]]:
    """A naive one-step-at-a-time model of the same engine, for comparison."""
    count = len(trace.arrivals)
    first = [math.nan] * count
    finish = [math.nan] * count
    pending = deque(range(count))
    waiting: deque[int] = deque()
    prefill: list[list[int]] = []  # [request, prompt tokens left]
    decoding: dict[int, int] = {}  # request -> tokens still to generate
    resident: dict[int, int] = {}  # request -> KV tokens held
    reserved = 0
    now = 0.0
    while pending or waiting or prefill or decoding:
        while pending and trace.arrivals[pending[0]] <= now:
            waiting.append(pending.popleft())
        if not (waiting or prefill or decoding):
            now = trace.arrivals[pending[0]]
            continue
        budget = profile.max_batched_tokens - len(decoding)
        chunks: list[tuple[list[int], int]] = []
        for entry in prefill:
            if budget <= 0:
                break
            take = min(entry[1], budget)
            chunks.append((entry, take))
            budget -= take
        while waiting and budget > 0 and len(decoding) + len(prefill) < profile.max_num_seqs:
            request = waiting[0]
            need = trace.prompt_tokens[request] + trace.generated_tokens[request]
            if reserved + need > profile.kv_cache_tokens:
                break
            waiting.popleft()
            reserved += need
            entry = [request, trace.prompt_tokens[request]]
            prefill.append(entry)
            resident[request] = 0
            take = min(entry[1], budget)
            chunks.append((entry, take))
            budget -= take
        duration = (
            profile.step_overhead_seconds
            + profile.prefill_seconds_per_token * sum(take for _, take in chunks)
            + profile.seconds_per_sequence * (len(decoding) + len(chunks))
            + profile.seconds_per_kv_token * sum(resident.values())
        )
        now += duration
        for request in list(decoding):
            resident[request] += 1
            decoding[request] -= 1
            if decoding[request] == 0:
                del decoding[request]
                finish[request] = now
                reserved -= trace.prompt_tokens[request] + trace.generated_tokens[request]
                del resident[request]
        for entry, take in chunks:
            entry[1] -= take
            resident[entry[0]] += take
            if entry[1] == 0:
                request = entry[0]
                prefill.remove(entry)
                first[request] = now
                resident[request] += 1
                if trace.generated_tokens[request] <= 1:
                    finish[request] = now
                    reserved -= trace.prompt_tokens[request] + trace.generated_tokens[request]
                    del resident[request]
                else:
                    decoding[request] = trace.generated_tokens[request] - 1
    return first, finish


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_closed_form_runs_match_a_step_by_step_reference(seed: int) -> None:
    rng = random.Random(seed)
    arrivals = sorted(rng.uniform(0, 20) for _ in range(120))
    prompts = tuple(rng.randint(1, 3000) for _ in arrivals)
    outputs = tuple(rng.randint(1, 300) for _ in arrivals)
    trace = Trace(tuple(arrivals), prompts, outputs)
    # A small cache and step budget so that chunked prefill and admission limits both take part.
    profile = ReplicaProfile(name="small", kv_cache_tokens=60_000, max_batched_tokens=2048, max_num_seqs=24)
    log = RequestLog(trace.arrivals, trace.prompt_tokens, trace.generated_tokens)
    replica = Replica(0, 0.0, 0.0, profile, log)
    events: list[float] = []
    next_end: float | None = None
    for request, arrival in enumerate(trace.arrivals):
        while next_end is not None and next_end <= arrival:
            next_end = replica.end_run()
            events.append(replica.run_end)
        planned = replica.dispatch(request, arrival)
        if planned is not None:
            next_end = planned
    while next_end is not None:
        next_end = replica.end_run()
    first, finish = _reference(trace, profile)
    for request in range(len(arrivals)):
        assert log.first_token[request] == pytest.approx(first[request], abs=1e-9), request
        assert log.finish[request] == pytest.approx(finish[request], abs=1e-9), request
    assert replica.outstanding == 0 and replica.reserved == 0 and replica.dec_a == 0
