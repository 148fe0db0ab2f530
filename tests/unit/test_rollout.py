"""The gated-rollout state machine: scenarios, and properties over random event sequences."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera_operator.api.v1alpha1 import (
    Condition,
    RejectedCandidate,
    RolloutSpec,
    RolloutStatus,
    Verdict,
    VersionRef,
)
from tessera_operator.rollout import (
    CreateEvaluation,
    DeleteVersion,
    EmitEvent,
    EvaluationObservation,
    LiveObservation,
    ManualRequest,
    Promote,
    RecordRejected,
    RolloutDecision,
    RolloutInputs,
    decide,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
POLICY = RolloutSpec.model_validate(
    {
        "evaluationSuites": ["quality"],
        "canarySteps": [
            {"weight": 10, "duration": "60s", "checks": {"minRequests": 5}},
            {"weight": 50, "duration": "60s", "checks": {"minRequests": 5}},
        ],
        "evaluationRetries": 2,
    }
)
GOOD_LIVE = LiveObservation(candidate_requests=50, candidate_error_rate=0.0, stable_error_rate=0.0,
                            candidate_ttft_p95_s=0.2, stable_ttft_p95_s=0.2)  # fmt: skip


@dataclass
class World:
    """The operator's side, reduced: status fields fed back, evaluations, readiness, live figures, time."""

    desired: str = "v2"
    policy: RolloutSpec | None = field(default_factory=lambda: POLICY)
    now: datetime = T0
    stable: VersionRef | None = field(default_factory=lambda: VersionRef(version="v1"))
    candidate: VersionRef | None = None
    rollout: RolloutStatus | None = None
    rejected: list[RejectedCandidate] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    ready: bool = True
    verdicts: dict[str, EvaluationObservation] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    live: LiveObservation | None = None
    history: list[RolloutDecision] = field(default_factory=list)

    def step(self, manual: ManualRequest | None = None, restart: bool = False) -> RolloutDecision:
        if restart:  # an operator restart: everything comes back from the stored status, as JSON
            self.rollout = (
                RolloutStatus.model_validate(json.loads(json.dumps(self.rollout.to_api())))
                if self.rollout
                else None
            )
        name = self.rollout.evaluation if self.rollout else None
        observed = self.verdicts.get(name) if name else None
        if observed is None and name in self.created:
            observed = EvaluationObservation(name=name, verdict=None)
        decision = decide(
            RolloutInputs(
                model="chat", desired=VersionRef(version=self.desired), policy=self.policy, now=self.now,
                stable=self.stable, candidate=self.candidate, rollout=self.rollout, rejected=list(self.rejected),
                candidate_ready=self.ready, evaluation=observed, live=self.live, manual=manual,
                conditions=self.conditions,
            )
        )  # fmt: skip
        self.stable, self.candidate, self.rollout = decision.stable, decision.candidate, decision.rollout
        self.rejected, self.conditions = decision.rejected, decision.conditions
        for action in decision.actions:
            if isinstance(action, CreateEvaluation) and action.name not in self.created:
                self.created.append(action.name)
        self.history.append(decision)
        return decision

    def finish_evaluation(self, verdict: Verdict, reason: str = "because") -> str:
        assert self.rollout and self.rollout.evaluation
        name = self.rollout.evaluation
        self.verdicts[name] = EvaluationObservation(
            name=name, verdict=verdict, reason=reason, finished=self.now
        )
        return name

    def later(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def weights(decision: RolloutDecision) -> dict[str, int]:
    return {t.version: t.weight for t in decision.traffic}


def events(decision: RolloutDecision) -> list[str]:
    return [a.reason for a in decision.actions if isinstance(a, EmitEvent)]


def condition(decision: RolloutDecision, kind: str) -> Condition:
    return next(c for c in decision.conditions if c.type == kind)


def test_the_first_version_serves_at_once() -> None:
    world = World(stable=None, desired="v1")
    decision = world.step()
    assert decision.stable and decision.stable.version == "v1"
    assert weights(decision) == {"v1": 100} and decision.candidate is None


def test_pass_walks_the_canary_steps_then_promotes_and_drains_the_old_version() -> None:
    world = World(ready=False)
    first = world.step()
    assert first.rollout.phase == "Evaluating" and weights(first) == {"v1": 100, "v2": 0}
    assert not any(isinstance(a, CreateEvaluation) for a in first.actions)  # not before the pods are ready
    world.ready = True
    created = world.step()
    [request] = [a for a in created.actions if isinstance(a, CreateEvaluation)]
    assert (request.candidate, request.baseline, request.suites, request.attempt) == (
        "v2",
        "v1",
        ("quality",),
        1,
    )
    assert weights(world.step()) == {"v1": 100, "v2": 0}  # running: still no traffic
    world.finish_evaluation("Pass")
    canary = world.step()
    assert canary.rollout.phase == "Canary" and weights(canary) == {"v1": 90, "v2": 10}
    assert canary.requeue_after_s == 60
    world.live = GOOD_LIVE
    world.later(30)
    assert weights(world.step()) == {"v1": 90, "v2": 10}  # the step's duration is not over
    world.later(31)
    second = world.step()
    assert second.rollout.step == 1 and weights(second) == {"v1": 50, "v2": 50}
    world.later(61)
    promoting = world.step()
    assert promoting.rollout.phase == "Promoting" and weights(promoting) == {"v1": 0, "v2": 100}
    assert any(isinstance(a, Promote) and a.version == "v2" for a in promoting.actions)
    assert promoting.serving == ("v1", "v2")  # the old version still drains
    world.later(31)
    done = world.step()
    assert done.rollout.phase == "Completed" and done.stable and done.stable.version == "v2"
    assert done.candidate is None and weights(done) == {"v2": 100}
    assert [a.version for a in done.actions if isinstance(a, DeleteVersion)] == ["v1"]
    assert (
        condition(done, "Progressing").status == "False"
        and condition(done, "Progressing").reason == "RolloutComplete"
    )
    assert world.step().actions == []  # steady: nothing more to do


def test_fail_rolls_back_records_the_candidate_and_does_not_start_again() -> None:
    world = World()
    world.step()
    evaluation = world.finish_evaluation("Fail", "facts: accuracy 0.21 vs 0.62")
    decision = world.step()
    assert decision.rollout.phase == "RollingBack" and weights(decision) == {"v1": 100, "v2": 0}
    [record] = [a for a in decision.actions if isinstance(a, RecordRejected)]
    assert record.entry.version == "v2" and record.entry.evaluation == evaluation
    assert "accuracy 0.21" in record.entry.reason
    assert "RolledBack" in events(decision)
    world.later(31)
    removed = world.step()
    assert [a.version for a in removed.actions if isinstance(a, DeleteVersion)] == ["v2"]
    assert removed.candidate is None and removed.rollout.phase == "Held"
    held = condition(removed, "RolloutHeld")
    assert held.status == "True" and held.reason == "CandidateRejected" and "accuracy 0.21" in held.message
    world.later(600)
    again = world.step()
    assert again.candidate is None and again.actions == [] and len(again.rejected) == 1


def test_inconclusive_holds_without_traffic_until_a_person_promotes() -> None:
    world = World()
    world.step()
    world.finish_evaluation("Inconclusive", "too few items")
    held = world.step()
    assert held.rollout.phase == "Held" and weights(held) == {"v1": 100, "v2": 0}
    assert condition(held, "RolloutHeld").reason == "EvaluationInconclusive"
    assert world.step().actions == []  # the hold is announced once
    promoted = world.step(ManualRequest("promote", "alice"))
    assert promoted.rollout.phase == "Promoting" and promoted.rollout.requested_by == "alice"
    assert [a.requested_by for a in promoted.actions if isinstance(a, Promote)] == ["alice"]


def test_error_is_retried_with_backoff_and_then_held_never_promoted() -> None:
    world = World()
    world.step()
    first = world.finish_evaluation("Error", "connection refused")
    waiting = world.step()
    assert waiting.rollout.phase == "Evaluating" and not any(
        isinstance(a, CreateEvaluation) for a in waiting.actions
    )
    assert waiting.requeue_after_s == 30
    world.later(31)
    retried = world.step()
    [second] = [a for a in retried.actions if isinstance(a, CreateEvaluation)]
    assert second.attempt == 2 and second.name != first
    world.finish_evaluation("Error", "connection refused")
    world.later(59)
    assert not any(isinstance(a, CreateEvaluation) for a in world.step().actions)  # backoff doubled to 60s
    world.later(2)
    assert any(isinstance(a, CreateEvaluation) for a in world.step().actions)
    world.finish_evaluation("Error", "connection refused")
    held = world.step()
    assert held.rollout.phase == "Held" and held.rollout.attempts == 3
    assert condition(held, "RolloutHeld").reason == "EvaluationErrored"
    refused = world.step(ManualRequest("promote", "bob"))
    assert refused.rollout.phase == "Held" and "PromoteRefused" in events(refused)
    assert refused.rollout.requested_by == "bob" and "no verdict" in refused.rollout.message
    assert weights(refused) == {"v1": 100, "v2": 0}


def test_manual_promote_cannot_overrule_a_fail() -> None:
    world = World(policy=POLICY.model_copy(update={"auto_rollback": False}))
    world.step()
    world.finish_evaluation("Fail", "worse")
    held = world.step()
    assert held.rollout.phase == "Held" and held.candidate is not None  # kept for inspection, no traffic
    assert not any(isinstance(a, RecordRejected) for a in held.actions)
    refused = world.step(ManualRequest("promote", "carol"))
    assert refused.rollout.phase == "Held" and "failed its evaluation" in refused.rollout.message


def test_a_failed_live_check_rolls_back_at_any_step() -> None:
    world = World()
    world.step()
    world.finish_evaluation("Pass")
    world.step()
    world.live = GOOD_LIVE
    world.later(61)
    assert world.step().rollout.step == 1
    world.live = replace(GOOD_LIVE, candidate_error_rate=0.2)
    world.later(5)
    decision = world.step()
    assert decision.rollout.phase == "RollingBack" and weights(decision) == {"v1": 100, "v2": 0}
    assert "error rate 20.00%" in decision.rejected[-1].reason and "step 2" in decision.rejected[-1].reason


def test_slow_ttft_fails_the_live_check() -> None:
    world = World()
    world.step()
    world.finish_evaluation("Pass")
    world.step()
    world.live = replace(GOOD_LIVE, candidate_ttft_p95_s=0.9)
    decision = world.step()
    assert decision.rollout.phase == "RollingBack" and "TTFT" in decision.rejected[-1].reason


def test_missing_live_evidence_waits_then_moves_on_with_a_warning() -> None:
    world = World()
    world.step()
    world.finish_evaluation("Pass")
    world.step()
    world.live = None  # metrics unavailable: not a failure
    world.later(61)
    waiting = world.step()
    assert waiting.rollout.step == 0 and "waiting for live evidence" in waiting.rollout.message
    world.later(120)
    moved = world.step()
    assert moved.rollout.step == 1 and "LiveCheckSkipped" in events(moved)


def test_a_spec_change_during_the_canary_starts_over_with_the_new_candidate() -> None:
    world = World()
    world.step()
    world.finish_evaluation("Pass")
    assert weights(world.step()) == {"v1": 90, "v2": 10}
    world.desired = "v3"
    decision = world.step()
    assert weights(decision) == {"v1": 100, "v3": 0}
    assert (
        decision.candidate and decision.candidate.version == "v3" and decision.rollout.phase == "Evaluating"
    )
    assert [a.version for a in decision.actions if isinstance(a, DeleteVersion)] == ["v2"]
    assert "CandidateSuperseded" in events(decision)
    assert all(a.candidate == "v3" for a in decision.actions if isinstance(a, CreateEvaluation))


def test_returning_the_spec_to_stable_withdraws_the_candidate() -> None:
    world = World()
    world.step()
    world.finish_evaluation("Pass")
    world.step()
    world.desired = "v1"
    decision = world.step()
    assert decision.rollout.phase == "RollingBack" and weights(decision) == {"v1": 100, "v2": 0}
    assert not decision.rejected
    world.later(31)
    done = world.step()
    assert done.candidate is None and done.rollout.phase == "Idle" and weights(done) == {"v1": 100}


def test_a_restart_resumes_at_the_same_step() -> None:
    world = World()
    world.step()
    world.finish_evaluation("Pass")
    world.step()
    world.live = GOOD_LIVE
    world.later(61)
    before = world.step()
    world.later(10)
    after = world.step(restart=True)
    assert after.rollout.step == before.rollout.step == 1
    assert weights(after) == weights(before) and after.rollout.step_started == before.rollout.step_started


def test_abort_rejects_and_retry_evaluates_again() -> None:
    world = World()
    world.step()
    world.finish_evaluation("Pass")
    world.step()
    aborted = world.step(ManualRequest("abort", "dave"))
    assert aborted.rollout.phase == "RollingBack" and aborted.rejected[-1].reason == "aborted by dave"
    world.later(31)
    assert world.step().rollout.phase == "Held"
    retried = world.step(ManualRequest("retry", "erin"))
    assert retried.candidate and retried.candidate.version == "v2" and retried.rollout.phase == "Evaluating"
    assert retried.rollout.requested_by == "erin" and retried.rollout.attempts == 1
    names = [a.name for d in world.history for a in d.actions if isinstance(a, CreateEvaluation)]
    assert len(set(names)) == len(names) == 2


def test_a_lost_evaluation_job_is_requested_again() -> None:
    world = World()
    world.step()
    world.created.clear()  # the Job never made it to the API
    decision = world.step()
    assert [a.attempt for a in decision.actions if isinstance(a, CreateEvaluation)] == [1]


def test_without_a_rollout_policy_the_new_version_replaces_the_old_once_ready() -> None:
    world = World(policy=None, ready=False)
    assert world.step().rollout.phase == "Evaluating"
    world.ready = True
    promoting = world.step()
    assert promoting.rollout.phase == "Promoting" and not any(
        isinstance(a, CreateEvaluation) for a in promoting.actions
    )
    world.later(31)
    assert world.step().stable == VersionRef(version="v2", since="2025-01-01T12:00:31Z")


def test_condition_transition_time_moves_only_when_status_flips() -> None:
    world = World()
    first = world.step()
    world.later(10)
    second = world.step()
    assert (
        condition(second, "Progressing").last_transition_time
        == condition(first, "Progressing").last_transition_time
    )


# Properties over random event sequences -------------------------------------------------------------

EVENTS = st.one_of(
    st.tuples(st.just("time"), st.sampled_from([5, 31, 61, 200, 700])),
    st.tuples(st.just("ready"), st.booleans()),
    st.tuples(st.just("verdict"), st.sampled_from(["Pass", "Fail", "Inconclusive", "Error"])),
    st.tuples(st.just("live"), st.sampled_from(["good", "errors", "slow", "none", "few"])),
    st.tuples(st.just("manual"), st.sampled_from(["promote", "abort", "retry"])),
    st.tuples(st.just("spec"), st.sampled_from(["v1", "v2", "v3"])),
    st.tuples(st.just("restart"), st.just(True)),
    st.tuples(st.just("reconcile"), st.just(True)),
)
LIVE = {
    "good": GOOD_LIVE, "errors": replace(GOOD_LIVE, candidate_error_rate=0.5),
    "slow": replace(GOOD_LIVE, candidate_ttft_p95_s=5.0), "none": None, "few": replace(GOOD_LIVE, candidate_requests=1),
}  # fmt: skip


@dataclass
class Ledger:
    """What each version has earned: verdicts seen and promotes a person got accepted."""

    verdicts: dict[str, list[str]] = field(default_factory=dict)
    manual_promotes: dict[str, list[str]] = field(default_factory=dict)


def _run(events_: list[tuple[str, Any]], policy: RolloutSpec | None) -> None:
    world = World(policy=policy)
    ledger = Ledger()
    world.step()
    for kind, value in events_:
        manual = None
        restart = False
        if kind == "time":
            world.later(value)
        elif kind == "ready":
            world.ready = value
        elif kind == "verdict" and world.rollout and world.rollout.evaluation in world.created:
            if world.rollout.evaluation not in world.verdicts and world.candidate:
                world.finish_evaluation(value)
                ledger.verdicts.setdefault(world.candidate.version, []).append(value)
        elif kind == "live":
            world.live = LIVE[value]
        elif kind == "manual":
            manual = ManualRequest(value, "tester")
        elif kind == "spec":
            world.desired = value
        elif kind == "restart":
            restart = True
        before_stable = world.stable.version if world.stable else None
        candidate_before = world.candidate.version if world.candidate else None
        verdict_before = None
        if world.rollout and world.rollout.evaluation in world.verdicts:
            verdict_before = world.verdicts[world.rollout.evaluation].verdict
        decision = world.step(manual, restart)
        # Traffic always adds up, and only names the versions that run.
        assert sum(t.weight for t in decision.traffic) == 100
        assert {t.version for t in decision.traffic} <= set(decision.serving)
        assert len(decision.rejected) <= 20
        RolloutStatus.model_validate(json.loads(json.dumps(decision.rollout.to_api())))
        promotes = [a for a in decision.actions if isinstance(a, Promote)]
        if manual is not None and manual.action == "promote" and promotes and candidate_before:
            ledger.manual_promotes.setdefault(candidate_before, []).append(str(verdict_before))
        gated = policy is not None and bool(policy.evaluation_suites)
        if not gated:
            continue
        # A candidate gets traffic only once its current evaluation passed (or a person promoted it).
        if decision.candidate is not None:
            share = weights(decision).get(decision.candidate.version, 0)
            if share > 0:
                name = decision.rollout.evaluation
                seen = world.verdicts.get(name) if name else None
                allowed = (seen is not None and seen.verdict == "Pass") or (
                    decision.rollout.phase == "Promoting"
                    and decision.candidate.version in ledger.manual_promotes
                )
                assert allowed, (decision.rollout, seen)
        # No promotion without a Pass, except a person's promote after Pass or Inconclusive.
        after_stable = decision.stable.version if decision.stable else None
        for promoted in [a.version for a in promotes] + (
            [after_stable] if after_stable != before_stable else []
        ):
            if promoted is None:
                continue
            passed = "Pass" in ledger.verdicts.get(promoted, [])
            manual_ok = any(v in ("Pass", "Inconclusive") for v in ledger.manual_promotes.get(promoted, []))
            assert passed or manual_ok, (promoted, ledger)
        for verdicts in ledger.manual_promotes.values():
            assert all(v in ("Pass", "Inconclusive") for v in verdicts), verdicts


@given(st.lists(EVENTS, max_size=60))
@settings(max_examples=300, deadline=None)
def test_random_event_sequences_never_promote_without_a_pass(events_: list[tuple[str, Any]]) -> None:
    _run(events_, POLICY)


@given(st.lists(EVENTS, max_size=40), st.booleans())
@settings(max_examples=150, deadline=None)
def test_random_event_sequences_keep_traffic_sane_with_other_policies(
    events_: list[tuple[str, Any]], rollback: bool
) -> None:
    policy = RolloutSpec.model_validate(
        {"evaluationSuites": ["q"], "autoRollback": rollback, "evaluationRetries": 0}
    )
    _run(events_, policy)
    _run(events_, None)


@given(st.lists(EVENTS, max_size=40))
@settings(max_examples=100, deadline=None)
def test_the_decision_is_a_function_of_its_inputs(events_: list[tuple[str, Any]]) -> None:
    world = World()
    for kind, value in events_:
        if kind == "time":
            world.later(value)
        elif (
            kind == "verdict"
            and world.rollout
            and world.rollout.evaluation in world.created
            and world.rollout.evaluation not in world.verdicts
        ):
            world.finish_evaluation(value)
        snapshot = (world.stable, world.candidate, world.rollout.model_copy(deep=True) if world.rollout else None,
                    list(world.rejected), list(world.conditions))  # fmt: skip
        first = world.step()
        world.stable, world.candidate, world.rollout, world.rejected, world.conditions = snapshot
        second = world.step()
        assert first == second


@pytest.mark.parametrize("verdict", ["Fail", "Error", None])
def test_manual_promote_is_refused_without_a_pass_or_inconclusive(verdict: Verdict | None) -> None:
    world = World()
    world.step()
    if verdict is not None:
        world.finish_evaluation(verdict)
    decision = world.step(ManualRequest("promote", "mallory"))
    assert not any(isinstance(a, Promote) for a in decision.actions)
    assert decision.stable and decision.stable.version == "v1"


def test_an_error_for_missing_prompt_logprobs_is_retried_and_named_never_promoted() -> None:
    """The verdict of a server without prompt log-probabilities is Error: retried with backoff, its reason
    shown, no traffic and no promotion, whatever the live figures say."""
    world = World()
    world.step()
    reason = "facts: http://10.0.0.2:8000/v1 did not echo the prompt, so it gives no prompt log-probabilities"
    world.live = GOOD_LIVE
    for attempt in (1, 2, 3):
        world.finish_evaluation("Error", reason)
        waiting = world.step()
        assert weights(waiting) == {"v1": 100, "v2": 0}
        assert "prompt log-probabilities" in waiting.rollout.message
        if attempt < 3:
            assert waiting.rollout.phase == "Evaluating" and waiting.requeue_after_s == 30 * 2 ** (attempt - 1)
            world.later(30 * 2 ** (attempt - 1) + 1)
            assert world.step().rollout.attempts == attempt + 1
    assert waiting.rollout.phase == "Held" and condition(waiting, "RolloutHeld").reason == "EvaluationErrored"
    assert not any(d.rollout.phase in ("Canary", "Promoting") for d in world.history)
