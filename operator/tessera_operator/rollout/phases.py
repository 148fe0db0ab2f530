"""What each moving phase does on a reconcile: Evaluating, Promoting, RollingBack (Canary: canary.py)."""

from __future__ import annotations

from datetime import datetime

from tessera_operator.api.v1alpha1 import VersionRef

from .builder import Decision
from .timeutil import parse_time, seconds_since
from .transitions import after_pass, hold, new_attempt, roll_back
from .types import CreateEvaluation, DeleteVersion


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
