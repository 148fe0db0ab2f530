"""The rollout's conditions on the Model: Progressing and RolloutHeld (kstatus-style)."""

from __future__ import annotations

from collections.abc import Sequence

from tessera_operator.api.v1alpha1 import Condition, RolloutStatus

_PROGRESS_REASONS = {
    "Evaluating": "Evaluating",
    "Canary": "CanaryStep",
    "Promoting": "Promoting",
    "RollingBack": "RollingBack",
}


def _condition(
    kind: str, status: bool, reason: str, message: str, previous: Sequence[Condition], now: str
) -> Condition:
    value = "True" if status else "False"
    before = next((c for c in previous if c.type == kind), None)
    # lastTransitionTime moves only when the status flips (the Kubernetes convention).
    since = before.last_transition_time if before is not None and before.status == value else now
    return Condition(
        type=kind, status=value, reason=reason, message=message[:32768], last_transition_time=since
    )


def rollout_conditions(
    rollout: RolloutStatus, held_reason: str | None, previous: Sequence[Condition], now: str,
    progress_reason: str | None = None,
) -> list[Condition]:
    """Progressing: True while a rollout moves. RolloutHeld: True while it waits for a person or a spec change."""
    moving = rollout.phase in _PROGRESS_REASONS
    if moving:
        reason = progress_reason or _PROGRESS_REASONS[rollout.phase]
        progressing = _condition("Progressing", True, reason, rollout.message, previous, now)
    elif rollout.phase == "Held":
        progressing = _condition("Progressing", False, "RolloutHeld", rollout.message, previous, now)
    else:
        progressing = _condition("Progressing", False, "RolloutComplete", rollout.message, previous, now)
    if rollout.phase == "Held":
        earlier = next((c.reason for c in previous if c.type == "RolloutHeld" and c.status == "True"), None)
        reason = held_reason or earlier or "Held"
        held = _condition("RolloutHeld", True, reason, rollout.message, previous, now)
    else:
        held = _condition("RolloutHeld", False, "NotHeld", "", previous, now)
    return [progressing, held]
