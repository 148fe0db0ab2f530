"""What each moving phase does on a reconcile: Evaluating, Canary, Promoting, RollingBack."""

from __future__ import annotations

from datetime import datetime

from tessera_operator.api.v1alpha1 import CanaryStep, VersionRef
from tessera_operator.api.v1alpha1.model import CanaryChecks

from .builder import Decision
from .timeutil import parse_duration, parse_time, seconds_since
from .transitions import after_pass, hold, new_attempt, promote, roll_back
from .types import CreateEvaluation, DeleteVersion, LiveObservation


def evaluating(d: Decision) -> None:
    assert d.candidate is not None
    settings = d.inputs.settings
    if not d.inputs.candidate_ready and d.status.evaluation is None:
        d.status.message = f"waiting for candidate {d.candidate.version} to be ready"
        d.wait(settings.poll_seconds)
        return
    if not d.gated:
        after_pass(d)  # no suites: nothing to pass (a Model without spec.rollout is replaced at once)
        return
    if d.status.evaluation is None:
        new_attempt(d)
        return
    observed = d.inputs.evaluation
    if observed is None or observed.name != d.status.evaluation:
        if d.inputs.candidate_ready:  # the Job is missing (lost before it was created): ensure it again
            suites = tuple(d.inputs.policy.evaluation_suites) if d.inputs.policy else ()
            assert d.stable is not None
            d.actions.append(CreateEvaluation(d.status.evaluation, d.candidate.version, d.stable.version, suites,
                                              d.status.attempts))  # fmt: skip
        d.wait(settings.poll_seconds)
        return
    verdict, reason = observed.verdict, observed.reason
    if verdict is None:
        d.status.message = f"evaluation {observed.name} is running"
        d.wait(settings.poll_seconds)
    elif verdict == "Pass":
        d.event("Normal", "EvaluationPassed", f"{observed.name}: {reason}")
        after_pass(d)
    elif verdict == "Fail":
        message = f"evaluation {observed.name} failed: {reason}"
        if d.inputs.policy is not None and d.inputs.policy.auto_rollback:
            roll_back(d, message)
        else:
            hold(
                d,
                "EvaluationFailed",
                message + " (autoRollback is off: the candidate is kept, without traffic; abort or retry)",
            )
    elif verdict == "Inconclusive":
        hold(d, "EvaluationInconclusive", f"evaluation {observed.name} was inconclusive: {reason}. "
              "Holding: promote, retry or abort.")  # fmt: skip
    else:
        _retry_after_error(d, reason, observed.finished)


def _retry_after_error(d: Decision, reason: str, finished: datetime | None) -> None:
    settings = d.inputs.settings
    retries = d.inputs.policy.evaluation_retries if d.inputs.policy else 0
    if d.status.attempts > retries:
        hold(d, "EvaluationErrored", f"evaluation {d.status.evaluation} ended in Error ({reason}) after "
              f"{d.status.attempts} attempt(s); never promoting without a verdict. Retry or abort.")  # fmt: skip
        return
    backoff = min(
        settings.retry_backoff_seconds * 2 ** (d.status.attempts - 1), settings.retry_backoff_max_seconds
    )
    since = finished or parse_time(d.status.step_started) or d.inputs.now
    remaining = backoff - (d.inputs.now - since).total_seconds()
    if remaining <= 0:
        d.event("Warning", "EvaluationRetry", f"{d.status.evaluation} ended in Error ({reason}); retrying")
        new_attempt(d)
        return
    d.status.message = (f"evaluation {d.status.evaluation} ended in Error ({reason}); retry {d.status.attempts} "
                        f"of {retries} in {remaining:.0f}s")  # fmt: skip
    d.wait(remaining)


def live_failure(checks: CanaryChecks, live: LiveObservation) -> str | None:
    """Why the live figures fail the step's checks, or None."""
    increase = live.candidate_error_rate - live.stable_error_rate
    if increase > checks.max_error_rate_increase:
        return (f"error rate {live.candidate_error_rate:.2%} vs stable {live.stable_error_rate:.2%} "
                f"(allowed increase {checks.max_error_rate_increase:.2%})")  # fmt: skip
    if live.candidate_ttft_p95_s is not None and live.stable_ttft_p95_s:
        ratio = live.candidate_ttft_p95_s / live.stable_ttft_p95_s
        if ratio > checks.max_ttft_ratio:
            return (f"p95 TTFT {live.candidate_ttft_p95_s:.3f}s is {ratio:.2f}x stable's "
                    f"{live.stable_ttft_p95_s:.3f}s (allowed {checks.max_ttft_ratio:g}x)")  # fmt: skip
    return None


def canary(d: Decision) -> None:
    assert d.candidate is not None
    steps: list[CanaryStep] = d.inputs.policy.canary_steps if d.inputs.policy else []
    if d.status.step >= len(steps):  # the steps were shortened under us: the remaining ones are done
        promote(d, None)
        return
    step = steps[d.status.step]
    checks = step.checks or CanaryChecks()
    live = d.inputs.live
    enough = live is not None and live.candidate_requests >= checks.min_requests
    if enough and live is not None:
        failure = live_failure(checks, live)
        if failure is not None:
            message = f"live check failed at canary step {d.status.step + 1} ({step.weight}%): {failure}"
            if d.inputs.policy is not None and d.inputs.policy.auto_rollback:
                roll_back(d, message)
            else:
                hold(
                    d,
                    "LiveCheckFailed",
                    message + " (autoRollback is off: traffic back to stable, candidate kept)",
                )
            return
    duration = parse_duration(step.duration)
    elapsed = seconds_since(d.status.step_started, d.inputs.now)
    if not d.inputs.candidate_ready:
        d.status.message = f"canary step {d.status.step + 1}: candidate pods are not ready; not advancing"
        d.wait(d.inputs.settings.poll_seconds)
        return
    if elapsed < duration:
        d.status.message = (
            f"canary step {d.status.step + 1} of {len(steps)}: {step.weight}% for {step.duration}"
        )
        d.wait(duration - elapsed)
        return
    if not enough:
        seen = live.candidate_requests if live is not None else 0
        patience = duration * d.inputs.settings.evidence_wait_factor
        if elapsed < patience:
            d.status.message = (f"canary step {d.status.step + 1}: waiting for live evidence "
                                f"({seen} of {checks.min_requests} requests{'' if live else ', metrics unavailable'})")  # fmt: skip
            d.wait(min(patience - elapsed, d.inputs.settings.poll_seconds))
            return
        d.event("Warning", "LiveCheckSkipped", f"canary step {d.status.step + 1} saw {seen} of "
                f"{checks.min_requests} requests in {elapsed:.0f}s; moving on on the offline evaluation alone")  # fmt: skip
    if d.status.step + 1 >= len(steps):
        promote(d, None)
        return
    d.status.step += 1
    following = steps[d.status.step]
    d.enter(
        "Canary",
        f"canary step {d.status.step + 1} of {len(steps)}: {following.weight}% to {d.candidate.version}",
    )
    d.event("Normal", "CanaryStep", d.status.message)
    d.wait(parse_duration(following.duration))


def promoting(d: Decision) -> None:
    assert d.candidate is not None and d.stable is not None
    remaining = d.inputs.settings.drain_seconds - seconds_since(d.status.step_started, d.inputs.now)
    if remaining > 0:
        d.wait(remaining)
        return
    old = d.stable.version
    d.stable = VersionRef(version=d.candidate.version, revision=d.candidate.revision, since=d.now)
    d.candidate = None
    d.actions.append(DeleteVersion(old, f"replaced by {d.stable.version}"))
    d.enter("Completed", f"{d.stable.version} promoted to stable; {old} removed")
    d.event("Normal", "Promoted", d.status.message)


def rolling_back(d: Decision) -> None:
    assert d.candidate is not None
    remaining = d.inputs.settings.drain_seconds - seconds_since(d.status.step_started, d.inputs.now)
    if remaining > 0:
        d.wait(remaining)
        return
    gone = d.candidate.version
    d.actions.append(DeleteVersion(gone, "rolled back"))
    d.candidate = None
    rejection = next((r for r in reversed(d.rejected) if r.version == gone), None)
    if gone == d.inputs.desired.version and rejection is not None:
        hold(d, "CandidateRejected", f"candidate {gone} was rolled back and removed: {rejection.reason}")
    else:
        d.enter(
            "Idle", f"candidate {gone} removed; {d.stable.version if d.stable else '-'} serves all traffic"
        )
