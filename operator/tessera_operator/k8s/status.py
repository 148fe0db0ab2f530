"""Writing a Model's status: one merge patch per reconcile, none when nothing changed."""

from __future__ import annotations

from typing import Any

from .client import Kube
from .resources import MODEL

Json = dict[str, Any]


def _merge_diff(old: Json, new: Json) -> Json:
    patch: Json = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        # A merge patch merges objects key by key, so a key gone from a nested object must be nulled too.
        patch[key] = _merge_diff(before, value) if isinstance(before, dict) and isinstance(value, dict) else value
    patch.update({key: None for key in old if key not in new})
    return patch


def status_patch(old: Json | None, new: Json) -> Json | None:
    """The merge patch that turns status `old` into `new`, or None when they are equal.

    Lists are replaced whole (a JSON merge patch cannot merge them); objects are merged, so fields that
    disappeared, at any depth, are set to null.
    """
    return _merge_diff(old or {}, new) or None


def write_status(kube: Kube, namespace: str, name: str, old: Json | None, new: Json) -> bool:
    """Patch the status subresource when it changed; returns whether it wrote."""
    patch = status_patch(old, new)
    if patch is None:
        return False
    kube.merge_patch(MODEL, namespace, name, {"status": patch}, subresource="status")
    return True
