"""The gated-rollout state machine (pure: no I/O, no clock of its own, no Kubernetes client)."""

from .builder import evaluation_name
from .machine import decide
from .manual import promote_refusal
from .phases import live_failure
from .types import (
    Action,
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
    RolloutSettings,
)

__all__ = [
    "Action",
    "CreateEvaluation",
    "DeleteVersion",
    "EmitEvent",
    "EvaluationObservation",
    "LiveObservation",
    "ManualRequest",
    "Promote",
    "RecordRejected",
    "RolloutDecision",
    "RolloutInputs",
    "RolloutSettings",
    "decide",
    "evaluation_name",
    "live_failure",
    "promote_refusal",
]
