"""The gated-rollout state machine: `decide(inputs) -> decision`, pure and deterministic.

    (new version) ──► Evaluating ──Pass──► Canary step 0 … step n ──► Promoting ──drain──► Completed
                        │  │  │                 │ live check fails         (candidate becomes stable,
                        │  │  └─Error: retry with backoff (evaluationRetries), then Held     old one removed)
                        │  └─Inconclusive──► Held (person: promote | retry | abort)
                        └─Fail──► RollingBack ──drain──► Held (candidate removed, in rejectedCandidates)

A candidate gets traffic only after a Pass, and is promoted only after a Pass, or by a person's promote
after a Pass or an Inconclusive verdict (never after Fail or Error). A spec change during a rollout
sends traffic back to stable and starts over with the new candidate. Every piece of state is in the
Model's status, so a restarted operator resumes exactly where it was.
"""

from __future__ import annotations

from tessera_operator.api.v1alpha1 import RolloutStatus, VersionRef

from .builder import Decision
from .canary import canary
from .manual import apply_manual
from .phases import evaluating, promoting, rolling_back
from .transitions import hold, start_candidate
from .types import DeleteVersion, RolloutDecision, RolloutInputs


def decide(inputs: RolloutInputs) -> RolloutDecision:
    """The next step of the rollout of one Model."""
    d = Decision(inputs)
    if d.stable is None:  # the first version has nothing to be compared with: it serves at once
        d.stable = VersionRef(version=inputs.desired.version, revision=inputs.desired.revision, since=d.now)
        d.candidate = None
        d.status = RolloutStatus(phase="Idle", message=f"version {inputs.desired.version} serves all traffic")
        return d.finish()
    if inputs.manual is not None:
        apply_manual(d, inputs.manual)
    _follow_spec(d)
    handler = {
        "Evaluating": evaluating,
        "Canary": canary,
        "Promoting": promoting,
        "RollingBack": rolling_back,
    }
    if d.candidate is not None and d.phase in handler:
        handler[d.phase](d)
    return d.finish()


def _follow_spec(d: Decision) -> None:
    """Start, replace or withdraw the candidate when the desired version differs from what runs."""
    desired = d.inputs.desired.version
    assert d.stable is not None
    if d.phase == "Promoting" and d.candidate is not None:
        return  # a promotion finishes (one drain) before a newer spec is looked at
    if d.candidate is None:
        if desired == d.stable.version:
            if d.phase not in ("Idle", "Completed"):
                d.status.phase = "Idle"
                d.status.message = f"version {desired} serves all traffic"
            return
        rejection = next((r for r in reversed(d.rejected) if r.version == desired), None)
        if rejection is not None:
            hold(d, "CandidateRejected", f"version {desired} was rejected at {rejection.time}: {rejection.reason}. "
                  "Change the spec, or run `tessera rollout retry` to evaluate it again.")  # fmt: skip
            return
        start_candidate(d)
        return
    if d.candidate.version == desired:
        return
    old = d.candidate.version
    if desired == d.stable.version:
        if d.phase != "RollingBack":
            d.event(
                "Normal", "CandidateWithdrawn", f"the spec returned to {desired}; withdrawing candidate {old}"
            )
            d.enter(
                "RollingBack", f"the spec returned to stable {desired}: traffic back to it, removing {old}"
            )
        return
    d.event(
        "Normal",
        "CandidateSuperseded",
        f"the spec changed during the rollout of {old}; starting over with {desired}",
    )
    d.actions.append(DeleteVersion(old, f"superseded by {desired}", d.inputs.settings.drain_seconds))
    start_candidate(d)
