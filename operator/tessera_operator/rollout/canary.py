"""The Canary phase: hold each step's weight for its duration while live checks compare the candidate
with the stable version; roll back (or hold) on a failed check.

Live evidence is what the serving pods counted since the step began (see live.py). A check is judged only
once the candidate has served the step's `minRequests`; before that, nothing fails. A step whose
duration is over but that still lacks evidence waits up to `evidence_wait_factor` times its duration,
saying so in the Progressing condition (reason AwaitingLiveEvidence), then applies the operator's
`insufficient_evidence` policy: `advance` (the default) moves on with a LiveCheckSkipped Warning and says
so in the next step's condition (reason LiveCheckSkipped); `hold` stops for a person (RolloutHeld,
reason InsufficientLiveEvidence). Never a silent pass, never a failure for lack of traffic.
"""

from __future__ import annotations

from tessera_operator.api.v1alpha1 import CanaryStep
from tessera_operator.api.v1alpha1.model import CanaryChecks

from .builder import Decision
from .live import describe
from .timeutil import parse_duration, seconds_since
from .transitions import hold, promote, roll_back
from .types import LiveObservation


def live_failure(checks: CanaryChecks, live: LiveObservation) -> str | None:
    """Why the live figures fail the step's checks, or None."""
    increase = live.candidate_error_rate - live.stable_error_rate
    if increase > checks.max_error_rate_increase:
        return (f"error rate {live.candidate_error_rate:.2%} vs stable {live.stable_error_rate:.2%} "
                f"(allowed increase {checks.max_error_rate_increase:.2%})")  # fmt: skip
    if live.candidate_ttft_p95_s is not None and live.stable_ttft_p95_s:
        ratio = live.candidate_ttft_p95_s / live.stable_ttft_p95_s
        slower_by = live.candidate_ttft_p95_s - live.stable_ttft_p95_s
        if ratio > checks.max_ttft_ratio and slower_by > checks.ttft_slack_seconds:
            return (f"p95 TTFT {live.candidate_ttft_p95_s:.3f}s is {ratio:.2f}x stable's "
                    f"{live.stable_ttft_p95_s:.3f}s (allowed {checks.max_ttft_ratio:g}x, or "
                    f"{checks.ttft_slack_seconds:g}s slower)")  # fmt: skip
    return None


def _what_was_checked(live: LiveObservation) -> str:
    """Which checks the figures could judge (TTFT needs observations on both sides)."""
    if live.candidate_ttft_p95_s is None or not live.stable_ttft_p95_s:
        return "error rate checked; TTFT not compared (no observations on one side)"
    return "error rate and TTFT checked"


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
                hold(d, "LiveCheckFailed", message + " (autoRollback is off: traffic back to stable, candidate kept)")
            return
    duration = parse_duration(step.duration)
    elapsed = seconds_since(d.status.step_started, d.inputs.now)
    if not d.inputs.candidate_ready:
        d.status.message = f"canary step {d.status.step + 1}: candidate pods are not ready; not advancing"
        d.wait(d.inputs.settings.poll_seconds)
        return
    if elapsed < duration:
        d.wait(duration - elapsed)
        return
    note = ""
    if not enough:
        seen = live.candidate_requests if live is not None else 0
        patience = duration * d.inputs.settings.evidence_wait_factor
        if elapsed < patience:
            # The message names no running count, so waiting writes the status once, not on every reconcile.
            d.status.message = (f"canary step {d.status.step + 1} of {len(steps)}: waiting for live evidence "
                                f"(fewer than {checks.min_requests} candidate requests since the step began"
                                f"{'' if live else '; pod metrics unavailable'})")  # fmt: skip
            d.progress_reason = "AwaitingLiveEvidence"
            d.wait(min(patience - elapsed, d.inputs.settings.poll_seconds))
            return
        shortfall = (f"canary step {d.status.step + 1} saw {seen} of {checks.min_requests} candidate requests "
                     f"in {elapsed:.0f}s{'' if live else ' (pod metrics unavailable)'}")  # fmt: skip
        if d.inputs.settings.insufficient_evidence == "hold":
            hold(d, "InsufficientLiveEvidence", f"{shortfall}: too little traffic to judge; holding "
                 "(promote, retry or abort)")  # fmt: skip
            return
        d.event("Warning", "LiveCheckSkipped", f"{shortfall}; moving on on the offline evaluation alone")
        note = f" (step {d.status.step + 1} moved on without live evidence: {seen} of {checks.min_requests} requests)"
    elif live is not None:
        note = f" (step {d.status.step + 1} passed: {describe(live)}; {_what_was_checked(live)})"
    if d.status.step + 1 >= len(steps):
        promote(d, None)
        d.status.message += note
    else:
        d.status.step += 1
        following = steps[d.status.step]
        d.enter("Canary", f"canary step {d.status.step + 1} of {len(steps)}: {following.weight}% to "
                f"{d.candidate.version}{note}")  # fmt: skip
        d.event("Normal", "CanaryStep", d.status.message)
        d.wait(parse_duration(following.duration))
