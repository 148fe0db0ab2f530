"""Kubernetes Events on a Model, for `kubectl describe model` (posted on transitions only)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from datetime import UTC, datetime
from typing import Any, Literal

from .client import Kube
from .errors import KubeError
from .resources import EVENT

Json = dict[str, Any]
EventType = Literal["Normal", "Warning"]
COMPONENT = "tessera-operator"
log = logging.getLogger("tessera_operator.k8s.events")


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes writes it (seconds precision, Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Posts core/v1 Events about objects; a failure to post is logged, never raised."""

    def __init__(self, kube: Kube, instance: str | None = None) -> None:
        self.kube = kube
        self.instance = instance or os.environ.get("POD_NAME") or socket.gethostname()

    def event(self, involved: Json, type_: EventType, reason: str, message: str) -> None:
        """Record one event about `involved` (an object in wire form)."""
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        timestamp = now_rfc3339()
        body: Json = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "count": 1,
        }
        try:
            self.kube.create(EVENT, namespace, body)
        except KubeError as error:
            log.warning("could not post event %s on %s/%s: %s", reason, namespace, meta["name"], error)
