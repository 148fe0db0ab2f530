"""Desired state (pure): from a Model, its plan and its version to the Kubernetes objects that serve it.

No I/O here: these functions are unit-tested without a cluster and reused by the CLI.
"""

from .build import ObjectKey, desired_objects, model_objects, version_objects
from .inputs import DesiredSettings, WorkloadPlan
from .labels import ModelRef, workload_name
from .versioning import version_hash

__all__ = [
    "DesiredSettings", "ModelRef", "ObjectKey", "WorkloadPlan", "desired_objects", "model_objects",
    "version_hash", "version_objects", "workload_name",
]
