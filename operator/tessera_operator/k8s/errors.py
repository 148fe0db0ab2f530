"""Typed errors of the Kubernetes API, so callers decide by kind rather than by HTTP status."""

from __future__ import annotations

import json


class KubeError(Exception):
    """A request to the apiserver failed."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retriable(self) -> bool:
        """Whether trying again later can succeed (server-side trouble, throttling, conflicts)."""
        return self.status in (0, 409, 429) or self.status >= 500


class NotFound(KubeError):
    """The object (or its kind: a CRD not installed) does not exist."""


class Conflict(KubeError):
    """A conflicting write (resourceVersion or field ownership)."""


class Invalid(KubeError):
    """The apiserver rejected the object (schema, admission, immutable field)."""


class Forbidden(KubeError):
    """RBAC or admission (PodSecurity, quota) forbids the request."""


class Unavailable(KubeError):
    """The apiserver could not be reached or answered with a server error."""


def from_response(status: int, reason: str, body: bytes | str | None) -> KubeError:
    """The typed error of a failed response; the message is the apiserver's Status message when present."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
    message = text
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or text)
            reason = str(parsed.get("reason") or reason)
    except ValueError:
        pass
    kind: type[KubeError] = {404: NotFound, 409: Conflict, 422: Invalid, 400: Invalid, 403: Forbidden}.get(
        status, Unavailable if status >= 500 or status == 0 else KubeError
    )
    return kind(status, reason or "", message[:2000])
