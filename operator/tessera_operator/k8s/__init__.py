"""The Kubernetes edge of the operator: client, server-side apply without idle writes, status, events."""

from .apply import ApplyResult, apply_if_changed, delete_object
from .client import FIELD_MANAGER, Kube, load_api_client
from .errors import Conflict, Forbidden, Invalid, KubeError, NotFound, Unavailable
from .events import EventRecorder, now_rfc3339
from .status import status_patch, write_status

__all__ = [
    "FIELD_MANAGER", "ApplyResult", "Conflict", "EventRecorder", "Forbidden", "Invalid", "Kube", "KubeError",
    "NotFound", "Unavailable", "apply_if_changed", "delete_object", "load_api_client", "now_rfc3339",
    "status_patch", "write_status",
]
