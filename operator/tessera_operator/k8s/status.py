"""Writing a Model's status: one merge patch per reconcile, none when nothing changed."""

from __future__ import annotations

from typing import Any

from .client import Kube
from .resources import MODEL

Json = dict[str, Any]


def status_patch(old: Json | None, new: Json) -> Json | None:
    """The merge patch that turns status `old` into `new`, or None when they are equal.

    Top-level fields are replaced whole (lists cannot be merged by a JSON merge patch) and fields
    that disappeared are set to null.
    """
    old = old or {}
    patch: Json = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})
    return patch or None


def write_status(kube: Kube, namespace: str, name: str, old: Json | None, new: Json) -> bool:
    """Patch the status subresource when it changed; returns whether it wrote."""
    patch = status_patch(old, new)
    if patch is None:
        return False
    kube.merge_patch(MODEL, namespace, name, {"status": patch}, subresource="status")
    return True
