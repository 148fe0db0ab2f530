"""Live canary checks: the pods' own counters (vLLM names, as Tessera's engine exports them) judged as
differences since the canary step began; pass, fail (rollback) and too little traffic, through the
reconciler against an in-memory API, and the pure arithmetic (deltas, restarts, quantiles)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_desired_reconciler_fake import NAMESPACE, h100_node
from test_rollout_strategy import NAME, Clock, RolloutFake, start_candidate

from tessera_operator.api.v1alpha1 import RolloutSpec
from tessera_operator.reconcile import rollout_strategy
from tessera_operator.reconcile.scrape import PodMetrics, parse_pod_metrics
from tessera_operator.rollout import PodCounters, RolloutSettings, baseline, observe_live, quantile
from tessera_runtime.metrics import EngineMetrics

Json = dict[str, Any]


@dataclass
class Pod:
    """A serving pod's real metric set (the runtime's EngineMetrics), driven by the test."""

    metrics: EngineMetrics = field(default_factory=lambda: EngineMetrics("m", 2048))

    def serve(self, requests: int, ttft_s: float, errors: int = 0) -> None:
        for index in range(requests):
            self.metrics.time_to_first_token.observe(ttft_s)
            self.metrics.observe_finished("error" if index < errors else "stop", ttft_s, 0.0, 8, 8)

    def scrape(self) -> PodMetrics:
        body, _ = self.metrics.render()
        return parse_pod_metrics(body.decode())


@dataclass
class Fleet:
    """What the scraper finds at each pod IP."""

    pods: dict[str, Pod] = field(default_factory=dict)
    scrapes: int = 0

    def __call__(self, addresses: dict[str, str]) -> dict[str, PodMetrics | None]:
        self.scrapes += 1
        return {name: self.pods[ip].scrape() if ip in self.pods else None for name, ip in addresses.items()}


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    found = Fleet({"10.0.0.1": Pod(), "10.0.0.2": Pod()})
    monkeypatch.setattr(rollout_strategy, "default_scraper", found)
    yield found


@pytest.fixture
def fake() -> RolloutFake:
    return RolloutFake([h100_node("h100-0"), h100_node("h100-1")])


def into_canary(fake: RolloutFake, fleet: Fleet, clock: Clock) -> tuple[Any, str, str]:
    """Stable has served before the rollout; the candidate passes its evaluation and enters the canary."""
    stable, candidate = fleet.pods["10.0.0.1"], fleet.pods["10.0.0.2"]
    stable.serve(200, 0.2, errors=2)  # history before the step: must not count
    run, old, new = start_candidate(fake, clock)
    candidate.serve(12, 0.2)  # the evaluation's own requests: before the step, must not count
    fake.verdict(fake.model(NAME)["status"]["rollout"]["evaluation"], "Pass")
    run.reconcile(NAMESPACE, NAME)
    rollout = fake.model(NAME)["status"]["rollout"]
    assert rollout["phase"] == "Canary"
    recorded = rollout["liveBaseline"]
    assert recorded["step"] == 0 and recorded["stepStarted"] == rollout["stepStarted"]
    assert recorded["pods"][f"{NAME}-{old}-pod"]["requests"] == 200
    assert recorded["pods"][f"{NAME}-{new}-pod"]["requests"] == 12
    return run, old, new


def status_writes(fake: RolloutFake) -> int:
    return sum(1 for w in fake.writes if w.startswith("patch Model/") and w.endswith("/status"))


def condition(fake: RolloutFake, kind: str) -> Json:
    return next(c for c in fake.model(NAME)["status"]["conditions"] if c["type"] == kind)


def test_a_healthy_candidate_passes_the_live_check_judged_since_the_step_began(
    fake: RolloutFake, fleet: Fleet
) -> None:
    clock = Clock()
    run, _, _ = into_canary(fake, fleet, clock)
    fleet.pods["10.0.0.1"].serve(90, 0.2)
    fleet.pods["10.0.0.2"].serve(30, 0.25)
    clock.advance(6)
    run.reconcile(NAMESPACE, NAME)
    rollout = fake.model(NAME)["status"]["rollout"]
    assert rollout["phase"] == "Promoting"
    # The figures are the step's own: 30 candidate requests (not 42), stable's 2 old errors left out.
    assert "candidate 30 requests, 0.00% errors" in rollout["message"]
    assert "stable 90 requests, 0.00% errors" in rollout["message"]
    assert "error rate and TTFT checked" in rollout["message"]
    assert "liveBaseline" not in rollout  # outside the canary the baseline goes
    patches = [w for w in fake.status_patches if "rollout" in w]
    assert patches[-1]["rollout"]["liveBaseline"] is None, "removed by the merge patch, not left behind"
    assert "LiveCheckSkipped" not in [e["reason"] for e in fake.events]


def test_a_candidate_with_errors_is_rolled_back_before_the_step_ends(fake: RolloutFake, fleet: Fleet) -> None:
    clock = Clock()
    run, old, new = into_canary(fake, fleet, clock)
    fleet.pods["10.0.0.1"].serve(60, 0.2)
    fleet.pods["10.0.0.2"].serve(25, 0.2, errors=5)
    clock.advance(1)  # well within the step's 5 s: a failure needs no waiting
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert status["rollout"]["phase"] == "RollingBack"
    assert status["traffic"][0] == {"version": old, "weight": 100}
    (rejected,) = status["rejectedCandidates"]
    assert rejected["version"] == new and "error rate 20.00% vs stable 0.00%" in rejected["reason"]
    assert "RolledBack" in [e["reason"] for e in fake.events]


def test_a_slow_candidate_is_rolled_back_on_ttft(fake: RolloutFake, fleet: Fleet) -> None:
    clock = Clock()
    run, _, _ = into_canary(fake, fleet, clock)
    fleet.pods["10.0.0.1"].serve(60, 0.2)
    fleet.pods["10.0.0.2"].serve(25, 2.0)
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert status["rollout"]["phase"] == "RollingBack"
    assert "p95 TTFT" in status["rejectedCandidates"][0]["reason"]


def test_too_little_traffic_says_so_then_moves_on_with_a_warning(fake: RolloutFake, fleet: Fleet) -> None:
    clock = Clock()
    run, _, _ = into_canary(fake, fleet, clock)
    fleet.pods["10.0.0.2"].serve(3, 0.2, errors=3)  # all errors, but 3 of 20 requests judge nothing
    clock.advance(6)
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert status["rollout"]["phase"] == "Canary" and not status.get("rejectedCandidates")
    progressing = condition(fake, "Progressing")
    assert progressing["reason"] == "AwaitingLiveEvidence"
    assert "fewer than 20 candidate requests" in progressing["message"]
    writes = status_writes(fake)
    fleet.pods["10.0.0.2"].serve(2, 0.2)
    clock.advance(2)
    run.reconcile(NAMESPACE, NAME)  # more requests, still too few: nothing new to write
    assert status_writes(fake) == writes
    clock.advance(10)  # past 3x the step's duration
    run.reconcile(NAMESPACE, NAME)
    rollout = fake.model(NAME)["status"]["rollout"]
    assert rollout["phase"] == "Promoting"
    assert "moved on without live evidence: 5 of 20 requests" in rollout["message"]
    skipped = [e for e in fake.events if e["reason"] == "LiveCheckSkipped"]
    assert skipped and "saw 5 of 20 candidate requests" in skipped[0]["message"]


def test_the_baseline_is_written_once_per_step(fake: RolloutFake, fleet: Fleet) -> None:
    clock = Clock()
    run, _, _ = into_canary(fake, fleet, clock)
    recorded = fake.model(NAME)["status"]["rollout"]["liveBaseline"]
    writes = status_writes(fake)
    for _ in range(3):
        fleet.pods["10.0.0.2"].serve(1, 0.2)
        clock.advance(1)
        run.reconcile(NAMESPACE, NAME)
    assert fake.model(NAME)["status"]["rollout"]["liveBaseline"] == recorded
    assert status_writes(fake) == writes


# ----------------------------------------------------------------------------- pure arithmetic
BOUNDS = (0.1, 0.25, 0.5, 1.0)


def counters(version: str, requests: float, errors: float, fast: float, slow: float) -> PodCounters:
    """`fast` observations at <= 0.1 s, `slow` ones between 0.5 and 1 s."""
    cumulative = (fast, fast, fast, fast + slow)
    return PodCounters(version, requests, errors, tuple(zip(BOUNDS, cumulative, strict=True)), fast + slow)


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    buckets = ((0.1, 50.0), (0.25, 90.0), (0.5, 100.0))
    assert quantile(0.5, buckets, 100) == pytest.approx(0.1)
    assert quantile(0.95, buckets, 100) == pytest.approx(0.25 + 0.25 * 0.5)
    assert quantile(0.95, (), 0) is None
    assert quantile(0.99, ((0.1, 10.0),), 20) == 0.1  # beyond the last finite bound: that bound


def test_a_restarted_pod_counts_from_zero_and_a_new_pod_counts_whole() -> None:
    before = {"c-0": counters("c", 100, 10, 100, 0), "s-0": counters("s", 500, 0, 500, 0)}
    recorded = baseline(0, "2025-01-01T00:00:00Z", before)
    now = {
        "c-0": counters("c", 7, 0, 7, 0),  # restarted: fewer than before, all since the step began
        "c-1": counters("c", 20, 1, 0, 20),  # appeared during the step
        "s-0": counters("s", 540, 4, 540, 0),
        "x-0": counters("x", 999, 999, 0, 999),  # another version: ignored
    }
    live = observe_live(now, recorded, "c", "s")
    assert live.candidate_requests == 27 and live.candidate_error_rate == pytest.approx(1 / 27)
    assert live.stable_requests == 40 and live.stable_error_rate == pytest.approx(4 / 40)
    assert live.stable_ttft_p95_s is not None and live.stable_ttft_p95_s <= 0.1
    assert live.candidate_ttft_p95_s is not None and 0.5 < live.candidate_ttft_p95_s <= 1.0


def test_without_stable_observations_ttft_is_not_compared() -> None:
    recorded = baseline(0, None, {"c-0": counters("c", 0, 0, 0, 0)})
    live = observe_live({"c-0": counters("c", 30, 0, 0, 30)}, recorded, "c", "s")
    assert live.stable_ttft_p95_s is None and live.stable_requests == 0


def test_hold_policy_stops_for_a_person_when_evidence_is_missing() -> None:
    from test_rollout import World

    world = World()
    world.policy = RolloutSpec.model_validate(
        {"evaluationSuites": ["s"], "canarySteps": [{"weight": 10, "duration": "60s"}]})
    world.step()
    world.finish_evaluation("Pass")
    world.step()
    held = _step_with(world, RolloutSettings(insufficient_evidence="hold"), later=181)
    assert held.rollout.phase == "Held"
    reasons = {c.type: c.reason for c in held.conditions}
    assert reasons["RolloutHeld"] == "InsufficientLiveEvidence"
    assert {t.version: t.weight for t in held.traffic} == {"v1": 100, "v2": 0}


def _step_with(world: Any, settings: RolloutSettings, later: float) -> Any:
    from tessera_operator.api.v1alpha1 import VersionRef
    from tessera_operator.rollout import RolloutInputs, decide

    world.later(later)
    return decide(RolloutInputs(
        model="chat", desired=VersionRef(version=world.desired), policy=world.policy, now=world.now,
        stable=world.stable, candidate=world.candidate, rollout=world.rollout, rejected=list(world.rejected),
        candidate_ready=True, evaluation=world.verdicts.get(world.rollout.evaluation), live=None,
        conditions=world.conditions, settings=settings,
    ))  # fmt: skip


def test_a_new_candidate_does_not_inherit_the_previous_evaluation(fake: RolloutFake, fleet: Fleet) -> None:
    """Status is written as a merge patch: a field the rollout no longer has (the previous candidate's
    evaluation, the step's baseline) must be removed, or a new candidate would be judged by an old verdict."""
    clock = Clock()
    run, _, first = into_canary(fake, fleet, clock)
    fleet.pods["10.0.0.2"].serve(25, 0.2, errors=10)
    run.reconcile(NAMESPACE, NAME)
    clock.advance(61)
    run.reconcile(NAMESPACE, NAME)
    assert fake.model(NAME)["status"]["rollout"]["phase"] == "Held"
    model = fake.model(NAME)
    model["spec"]["source"]["revision"] = "a third one"
    model["metadata"]["generation"] = 3
    run.reconcile(NAMESPACE, NAME)
    rollout = fake.model(NAME)["status"]["rollout"]
    assert rollout["phase"] == "Evaluating" and "evaluation" not in rollout and "liveBaseline" not in rollout
    clock.advance(5)
    run.reconcile(NAMESPACE, NAME)
    status = fake.model(NAME)["status"]
    assert status["rollout"]["phase"] == "Evaluating", status["rollout"]
    assert [r["version"] for r in status["rejectedCandidates"]] == [first]


def test_ttft_fails_only_when_both_the_ratio_and_the_slack_are_exceeded() -> None:
    from tessera_operator.api.v1alpha1.model import CanaryChecks
    from tessera_operator.rollout.canary import live_failure
    from tessera_operator.rollout.types import LiveObservation

    checks = CanaryChecks()  # 1.5x and 0.1 s by default
    noisy = LiveObservation(30, 0.0, 0.0, candidate_ttft_p95_s=0.170, stable_ttft_p95_s=0.106, stable_requests=30)
    assert live_failure(checks, noisy) is None  # 1.6x, but only 64 ms slower: bucket noise
    slow = LiveObservation(30, 0.0, 0.0, candidate_ttft_p95_s=0.9, stable_ttft_p95_s=0.3, stable_requests=30)
    reason = live_failure(checks, slow)
    assert reason is not None and "3.00x" in reason and "0.1s slower" in reason
    strict = CanaryChecks(ttft_slack_seconds=0.0)
    assert live_failure(strict, noisy) is not None
