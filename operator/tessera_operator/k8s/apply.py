"""Server-side apply that writes only when the live object differs from the desired one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .client import Kube
from .compare import needs_apply, with_applied_hash
from .resources import resource_of

Json = dict[str, Any]
log = logging.getLogger("tessera_operator.k8s.apply")


@dataclass
class ApplyResult:
    """What one round of applies did (names as Kind/name)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything was written or deleted."""
        return bool(self.written or self.deleted)


def apply_if_changed(kube: Kube, desired: Json, live: Json | None, result: ApplyResult) -> Json:
    """Apply `desired` (with force, under the client's one field manager) unless `live` already matches it.

    Returns the object as it now is.
    """
    name = f"{desired['kind']}/{desired['metadata']['name']}"
    if not needs_apply(desired, live):
        result.unchanged.append(name)
        assert live is not None
        return live
    log.info("applying %s in %s", name, desired["metadata"].get("namespace"))
    applied = kube.apply(with_applied_hash(desired), force=True)
    result.written.append(name)
    return applied


def delete_object(kube: Kube, live: Json, result: ApplyResult) -> None:
    """Delete exactly this object (by uid), unless it is already being deleted."""
    meta = live["metadata"]
    if meta.get("deletionTimestamp"):
        return
    if kube.delete(resource_of(live), meta.get("namespace"), meta["name"], uid=meta.get("uid")):
        log.info("deleted %s/%s in %s", live["kind"], meta["name"], meta.get("namespace"))
        result.deleted.append(f"{live['kind']}/{meta['name']}")
