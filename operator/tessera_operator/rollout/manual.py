"""A person's promote, abort or retry (the tessera.dev/rollout-action annotation), always recorded with who asked.

Manual promote is refused unless the candidate's evaluation passed or was Inconclusive (or the Model has
no evaluation suites): a person may take responsibility for an undecided evaluation, never overrule a
Fail or promote a candidate whose evaluation errored. Abort records the candidate as rejected, so the
same spec does not start it again; retry starts its evaluation over (also after a rejection).
"""

from __future__ import annotations

from tessera_operator.api.v1alpha1 import RolloutStatus

from .builder import Decision
from .transitions import promote, roll_back, start_candidate
from .types import ManualRequest


def promote_refusal(d: Decision) -> str | None:
    """Why a manual promote is refused now, or None when it is allowed."""
    if d.candidate is None:
        return "there is no candidate"
    if d.phase in ("Promoting", "RollingBack"):
        return f"the rollout is already {d.phase}"
    if not d.gated:
        return None
    verdict = d.verdict()
    if verdict in ("Pass", "Inconclusive"):
        return None
    if verdict == "Fail":
        return "the candidate failed its evaluation; a failed candidate is never promoted"
    if verdict == "Error":
        return "the evaluation ended in Error, so there is no verdict to promote on"
    return "the evaluation has no verdict yet"


def apply_manual(d: Decision, request: ManualRequest) -> None:
    """Apply the request to the decision under construction."""
    who = request.requested_by
    d.status.requested_by = who
    if request.action == "promote":
        refusal = promote_refusal(d)
        if refusal is None:
            d.event("Normal", "ManualPromote", f"promote requested by {who}")
            promote(d, who)
        else:
            d.event("Warning", "PromoteRefused", f"promote requested by {who} refused: {refusal}")
            d.status.message = f"promote requested by {who} refused: {refusal}"
    elif request.action == "abort":
        if d.candidate is None or d.phase == "RollingBack":
            d.event("Warning", "AbortIgnored", f"abort requested by {who}: no rollout to abort")
        else:
            roll_back(d, f"aborted by {who}")
    elif d.candidate is not None and d.phase in ("Held", "Evaluating", "Canary"):
        d.event("Normal", "ManualRetry", f"retry requested by {who}: evaluating {d.candidate.version} again")
        d.status = RolloutStatus(phase="Evaluating", requested_by=who)
        d.enter("Evaluating", f"retry requested by {who}: evaluating {d.candidate.version} again")
    elif d.candidate is None and d.stable is not None and d.inputs.desired.version != d.stable.version:
        d.event(
            "Normal", "ManualRetry", f"retry requested by {who}: rolling out {d.inputs.desired.version} again"
        )
        start_candidate(d)
    else:
        d.event("Warning", "RetryIgnored", f"retry requested by {who}: nothing to retry")
