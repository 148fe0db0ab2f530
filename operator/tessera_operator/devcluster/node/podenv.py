"""A container's environment as a kubelet builds it: values, ConfigMap/Secret references, the
downward API (fieldRef / resourceFieldRef), `$(VAR)` expansion, and the in-cluster API address.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Json = dict[str, Any]

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ConfigError(RuntimeError):
    """The pod references something missing (CreateContainerConfigError in the status)."""


def parse_quantity(text: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("500m", "2Gi", "1e3") as a number."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a quantity: {text!r}")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]


@dataclass
class PodContext:
    """What the downward API and references can read about one pod."""

    pod: Json
    pod_ip: str
    host_ip: str
    node_allocatable: Mapping[str, str]
    config_maps: dict[str, Json | None] = field(default_factory=dict)
    secrets: dict[str, Json | None] = field(default_factory=dict)

    @property
    def metadata(self) -> Json:
        return dict(self.pod.get("metadata", {}))

    def field_value(self, path: str) -> str:
        """Value of a downward-API fieldRef path."""
        meta = self.metadata
        spec = self.pod.get("spec", {})
        simple = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
            "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.podIP": self.pod_ip,
            "status.podIPs": self.pod_ip,
            "status.hostIP": self.host_ip,
            "status.hostIPs": self.host_ip,
        }
        if path in simple:
            return str(simple[path])
        if path in ("metadata.labels", "metadata.annotations"):
            values = meta.get(path.split(".")[1], {}) or {}
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        match = _LABEL_REF.match(path)
        if match:
            return str((meta.get(match.group(1), {}) or {}).get(match.group(2), ""))
        raise ConfigError(f"unsupported fieldRef {path!r}")

    def resource_value(self, container_name: str, resource: str, divisor: str | None) -> str:
        """Value of a downward-API resourceFieldRef (limits default to the node's allocatable)."""
        containers = self.pod.get("spec", {}).get("containers", []) + self.pod.get("spec", {}).get(
            "initContainers", []
        )
        container: Json = next((c for c in containers if c.get("name") == container_name), {})
        kind, _, name = resource.partition(".")
        resources = container.get("resources", {}) or {}
        raw = (resources.get(kind, {}) or {}).get(name)
        if raw is None and kind == "requests":
            raw = (resources.get("limits", {}) or {}).get(name)
        if raw is None:
            raw = self.node_allocatable.get(name, "0") if kind == "limits" else "0"
        unit = parse_quantity(divisor or "1")
        return str(math.ceil(parse_quantity(raw) / unit))

    def config_map_value(self, name: str, key: str | None, optional: bool) -> dict[str, str] | None:
        """One key (or all keys when key is None) of a fetched ConfigMap; None if optional and absent."""
        return _lookup("configmap", self.config_maps.get(name), name, key, optional, decode=False)

    def secret_value(self, name: str, key: str | None, optional: bool) -> dict[str, str] | None:
        """Like config_map_value, with the Secret's values base64-decoded."""
        return _lookup("secret", self.secrets.get(name), name, key, optional, decode=True)


def _lookup(
    kind: str, obj: Json | None, name: str, key: str | None, optional: bool, decode: bool
) -> dict[str, str] | None:
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    data: dict[str, str] = dict(obj.get("data") or {})
    if decode:
        data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
    if key is None:
        return data
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {obj['metadata'].get('namespace')}/{name}")
    return {key: data[key]}


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are replaced, `$$` is a literal `$`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i):
            end = text.find(")", i + 2)
            name = text[i + 2 : end] if end != -1 else ""
            if end != -1 and name in env:
                out.append(env[name])
                i = end + 1
            else:
                out.append(text[i : (end + 1 if end != -1 else len(text))])
                i = end + 1 if end != -1 else len(text)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def container_env(container: Json, context: PodContext, base: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: `base` (host and service variables), envFrom, then env in order."""
    env = dict(base)
    for source in container.get("envFrom", []) or []:
        prefix = source.get("prefix", "")
        values: dict[str, str] | None = None
        if "configMapRef" in source:
            ref = source["configMapRef"]
            values = context.config_map_value(ref["name"], None, bool(ref.get("optional")))
        elif "secretRef" in source:
            ref = source["secretRef"]
            values = context.secret_value(ref["name"], None, bool(ref.get("optional")))
        env.update({prefix + k: v for k, v in (values or {}).items()})
    for item in container.get("env", []) or []:
        value = _env_value(item, container, context, env)
        if value is not None:
            env[item["name"]] = value
    return env


def _env_value(item: Json, container: Json, context: PodContext, env: Mapping[str, str]) -> str | None:
    if "valueFrom" not in item:
        return expand(str(item.get("value", "")), env)
    source = item["valueFrom"]
    if "fieldRef" in source:
        return context.field_value(source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        ref = source["resourceFieldRef"]
        return context.resource_value(
            ref.get("containerName") or container["name"], ref["resource"], ref.get("divisor")
        )
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        found = context.config_map_value(ref["name"], ref["key"], bool(ref.get("optional")))
        return None if found is None else found[ref["key"]]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        found = context.secret_value(ref["name"], ref["key"], bool(ref.get("optional")))
        return None if found is None else found[ref["key"]]
    raise ConfigError(f"unsupported env source for {item.get('name')}: {sorted(source)}")


def referenced_objects(pod: Json) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets a pod's env and volumes reference."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec", {})
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                config_maps.add(source["configMapRef"]["name"])
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
        for item in container.get("env") or []:
            value_from = item.get("valueFrom") or {}
            if "configMapKeyRef" in value_from:
                config_maps.add(value_from["configMapKeyRef"]["name"])
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"]["name"])
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            config_maps.add(volume["configMap"]["name"])
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                config_maps.add(source["configMap"]["name"])
            if "secret" in source:
                secrets.add(source["secret"]["name"])
    return config_maps, secrets


def host_base_env(extra_path: str) -> dict[str, str]:
    """The few host variables a process needs (PATH with this environment's bin/ first, locale, TZ)."""
    env = {
        k: os.environ[k] for k in ("LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR") if k in os.environ
    }
    env["PATH"] = os.pathsep.join([extra_path, os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    return env
