"""The gated-rollout state machine (pure: no I/O, no clock of its own, no Kubernetes client)."""

from .builder import evaluation_name
from .canary import live_failure
from .live import PodCounters, baseline, describe, observe_live, quantile
from .machine import decide
from .manual import promote_refusal
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
    "PodCounters",
    "Promote",
    "RecordRejected",
    "RolloutDecision",
    "RolloutInputs",
    "RolloutSettings",
    "baseline",
    "decide",
    "describe",
    "evaluation_name",
    "live_failure",
    "observe_live",
    "promote_refusal",
    "quantile",
]
