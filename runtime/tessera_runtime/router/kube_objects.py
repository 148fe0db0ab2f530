"""Pure conversions from Kubernetes objects (API-form dicts) to routing-table entries.

Models are read leniently (only the fields the router needs, by their wire names in
tessera.dev/v1alpha1: spec.servedModelName, spec.aliases, status.traffic, status.stable.version,
status.candidate.version), so a Model the operator has not yet reconciled, or one written by a newer
operator, still routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .table import EndpointState, ModelKey, ModelSpec

GROUP = "tessera.dev"
VERSION = "v1alpha1"
PLURAL = "models"
MODEL_LABEL = "tessera.dev/model"
VERSION_LABEL = "tessera.dev/version"
DEMAND_ANNOTATION = "tessera.dev/demand-at"
SERVING_PORT_NAME = "http"
SERVING_PORT = 8000


def object_key(obj: Mapping[str, Any]) -> ModelKey:
    """(namespace, name) of any object."""
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace", "")), str(metadata.get("name", "")))


def _version_of(ref: Any) -> str | None:
    if isinstance(ref, Mapping) and isinstance(ref.get("version"), str) and ref["version"]:
        return str(ref["version"])
    return None


def model_spec(obj: Mapping[str, Any]) -> ModelSpec:
    """The routing view of a Model object."""
    namespace, name = object_key(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    served = spec.get("servedModelName") or name
    aliases = tuple(str(a) for a in spec.get("aliases") or [] if isinstance(a, str) and a)
    traffic: list[tuple[str, int]] = []
    for item in status.get("traffic") or []:
        if isinstance(item, Mapping) and isinstance(item.get("version"), str):
            try:
                traffic.append((item["version"], int(item.get("weight", 0))))
            except (TypeError, ValueError):
                continue
    return ModelSpec(namespace=namespace, name=name, served_name=str(served), aliases=aliases,
                     traffic=tuple(traffic), stable=_version_of(status.get("stable")),
                     candidate=_version_of(status.get("candidate")))


def _port(slice_obj: Mapping[str, Any]) -> int | None:
    ports = [p for p in slice_obj.get("ports") or [] if isinstance(p, Mapping) and p.get("port")]
    for port in ports:
        if port.get("name") == SERVING_PORT_NAME:
            return int(port["port"])
    return int(ports[0]["port"]) if ports else None


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def slice_endpoints(slice_obj: Mapping[str, Any]) -> tuple[ModelKey, str, str, list[EndpointState]] | None:
    """(Model key, slice name, version, endpoints) of an EndpointSlice; None when it is not a Model's.

    Conditions follow the EndpointSlice API: `ready` and `serving` unset mean true, `terminating`
    unset means false. An endpoint that is terminating gets no new requests; its streams finish.
    """
    metadata = slice_obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    model = labels.get(MODEL_LABEL)
    if not model:
        return None
    version = labels.get(VERSION_LABEL) or ""
    namespace = str(metadata.get("namespace", ""))
    port = _port(slice_obj)
    endpoints: list[EndpointState] = []
    if port is not None and slice_obj.get("addressType", "IPv4") in ("IPv4", "IPv6"):
        for item in slice_obj.get("endpoints") or []:
            conditions = item.get("conditions") or {}
            ready = conditions.get("ready") is not False
            serving = conditions.get("serving", conditions.get("ready")) is not False
            terminating = conditions.get("terminating") is True
            for address in (item.get("addresses") or [])[:1]:  # all addresses of one endpoint are fungible
                endpoints.append(EndpointState(url=_url(str(address), port), ready=ready and not terminating,
                                               serving=serving, terminating=terminating))
    return (namespace, str(model)), str(metadata.get("name", "")), str(version), endpoints


def pod_endpoints(pod: Mapping[str, Any]) -> tuple[ModelKey, str, str, list[EndpointState]] | None:
    """(Model key, group, version, endpoints) of a serving pod; None when it is not a Model's.

    For clusters whose pod IPs EndpointSlices cannot hold (the local development cluster gives pods
    loopback addresses, which the EndpointSlice API refuses). Ready is the pod's Ready condition;
    a pod with a deletionTimestamp is terminating: no new requests, its streams finish.
    """
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    model = labels.get(MODEL_LABEL)
    if not model:
        return None
    status = pod.get("status") or {}
    address = status.get("podIP")
    endpoints: list[EndpointState] = []
    if address and status.get("phase") not in ("Succeeded", "Failed"):
        port = SERVING_PORT
        for container in (pod.get("spec") or {}).get("containers") or []:
            for item in container.get("ports") or []:
                if item.get("name") == SERVING_PORT_NAME and item.get("containerPort"):
                    port = int(item["containerPort"])
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        serving = conditions.get("Ready") == "True"
        terminating = bool(metadata.get("deletionTimestamp"))
        endpoints.append(EndpointState(url=_url(str(address), port), ready=serving and not terminating,
                                       serving=serving, terminating=terminating))
    key = (str(metadata.get("namespace", "")), str(model))
    return key, f"pod/{metadata.get('name', '')}", str(labels.get(VERSION_LABEL) or ""), endpoints
