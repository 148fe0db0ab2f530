"""tessera.dev/v1alpha1: Model, EvaluationSuite and ModelEvaluation."""

from .base import API_VERSION, GROUP, VERSION, Condition, ConfigMapKeyRef, SecretKeyRef, Toleration
from .evaluation import (
    EvaluationItem,
    EvaluationSuite,
    EvaluationSuiteSpec,
    EvaluationTask,
    ModelEvaluation,
    ModelEvaluationResult,
    ModelEvaluationSpec,
    ModelEvaluationStatus,
    TaskData,
    TaskKind,
    TaskResult,
    Verdict,
)
from .model import (
    RESERVED_ENGINE_FLAGS,
    Architecture,
    AutoscalingSpec,
    AutoscalingStatus,
    CanaryStep,
    EngineSpec,
    Model,
    ModelSource,
    ModelSpec,
    ModelStatus,
    Placement,
    RejectedCandidate,
    ResolvedPlan,
    RolloutSpec,
    RolloutStatus,
    ServiceLevelObjective,
    TrafficWeight,
    VersionRef,
)

__all__ = [
    "API_VERSION", "GROUP", "RESERVED_ENGINE_FLAGS", "VERSION", "Architecture", "AutoscalingSpec",
    "AutoscalingStatus", "CanaryStep", "Condition", "ConfigMapKeyRef", "EngineSpec", "EvaluationItem",
    "EvaluationSuite", "EvaluationSuiteSpec", "EvaluationTask", "Model", "ModelEvaluation",
    "ModelEvaluationResult", "ModelEvaluationSpec", "ModelEvaluationStatus", "ModelSource", "ModelSpec",
    "ModelStatus", "Placement", "RejectedCandidate", "ResolvedPlan", "RolloutSpec", "RolloutStatus",
    "SecretKeyRef", "ServiceLevelObjective", "TaskData", "TaskKind", "TaskResult", "Toleration",
    "TrafficWeight", "Verdict", "VersionRef",
]
