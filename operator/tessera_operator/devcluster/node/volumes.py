"""Pod volumes as plain files under the pod's directory, and the container-path -> host-path rule.

A process cannot see `/models` or `/var/run/secrets/...`: every volume lives in
`<pod dir>/volumes/<volume name>/`. The rule that maps a container's view onto the host:

* each volumeMount maps `mountPath` to the volume's folder (plus `subPath` when given);
* in `command`, `args`, env values and `workingDir`, an absolute path that starts with a mount
  path (as a whole path component, at the start of the value or after one of ` =:,'"`) is
  rewritten to the host path; the longest mount path wins;
* the process also gets `TESSERA_MOUNT_MAP` (JSON {mountPath: hostPath}), `TESSERA_POD_DIR`, and,
  when a ServiceAccount token is mounted, `TESSERA_SERVICEACCOUNT_DIR` (token, ca.crt, namespace),
  for paths it builds itself (in-cluster clients: pass that token and CA to the client).
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera_operator.devcluster.node.podenv import ConfigError, PodContext

Json = dict[str, Any]
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# (audience or "", expirationSeconds) -> (token, expiry epoch seconds)
TokenFetcher = Callable[[str, int], Awaitable[tuple[str, float]]]


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _safe_join(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ConfigError(f"volume path {relative!r} escapes its volume")
    return target


@dataclass
class TokenFile:
    """A projected ServiceAccount token the pod worker keeps fresh."""

    path: Path
    audience: str
    expiration_seconds: int
    mode: int
    expires_at: float = 0.0
    issued_at: float = 0.0


class VolumeMaterialiser:
    """Writes a pod's volumes under `<pod dir>/volumes` and remembers tokens to refresh."""

    def __init__(self, pod_dir: Path, context: PodContext, fetch_token: TokenFetcher) -> None:
        self.root = pod_dir / "volumes"
        self.context = context
        self.fetch_token = fetch_token
        self.tokens: list[TokenFile] = []
        self.host_paths: dict[str, Path] = {}
        self._refreshing = False

    async def materialise(self, volumes: list[Json], refresh: bool = False) -> None:
        """Create every volume; raises ConfigError for a missing reference or an unsupported type.

        With `refresh`, rewrite the ConfigMap/Secret/downward-API files from the current objects
        (as a kubelet syncs them) and leave the tokens to their own refresh.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._refreshing = refresh
        if not refresh:
            self.tokens.clear()
        for volume in volumes:
            name = volume["name"]
            folder = self.root / name
            if "hostPath" in volume:
                self.host_paths[name] = Path(volume["hostPath"]["path"])
                if volume["hostPath"].get("type") == "DirectoryOrCreate":
                    self.host_paths[name].mkdir(parents=True, exist_ok=True)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            self.host_paths[name] = folder
            if "emptyDir" in volume:
                continue
            if "configMap" in volume:
                self._write_keyed(folder, volume["configMap"], secret=False)
            elif "secret" in volume:
                self._write_keyed(
                    folder, volume["secret"] | {"name": volume["secret"]["secretName"]}, secret=True
                )
            elif "downwardAPI" in volume:
                self._write_downward(
                    folder, volume["downwardAPI"], volume["downwardAPI"].get("defaultMode", 0o644)
                )
            elif "projected" in volume:
                await self._write_projected(folder, volume["projected"])
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise ConfigError(f"volume {name!r}: type {kinds} is not supported on the local node")

    def _write_keyed(self, folder: Path, source: Json, secret: bool, default_mode: int | None = None) -> None:
        optional = bool(source.get("optional"))
        lookup = self.context.secret_value if secret else self.context.config_map_value
        data = lookup(source["name"], None, optional)
        if data is None:
            return
        mode = source.get("defaultMode", default_mode if default_mode is not None else 0o644)
        items = source.get("items")
        if items:
            for item in items:
                if item["key"] not in data:
                    if optional:
                        continue
                    raise ConfigError(f"key {item['key']} not found in {source['name']}")
                _write_atomic(
                    _safe_join(folder, item["path"]), data[item["key"]].encode(), item.get("mode", mode)
                )
        else:
            for key, value in data.items():
                _write_atomic(_safe_join(folder, key), value.encode(), mode)
        if not secret:
            config_map = self.context.config_maps.get(source["name"]) or {}
            for key, value in (config_map.get("binaryData") or {}).items():
                if not items or any(i["key"] == key for i in items):
                    path = next((i["path"] for i in items or [] if i["key"] == key), key)
                    _write_atomic(_safe_join(folder, path), base64.b64decode(value), mode)

    def _write_downward(self, folder: Path, source: Json, mode: int) -> None:
        for item in source.get("items", []):
            if "fieldRef" in item:
                value = self.context.field_value(item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                value = self.context.resource_value(ref["containerName"], ref["resource"], ref.get("divisor"))
            _write_atomic(_safe_join(folder, item["path"]), value.encode(), item.get("mode", mode))

    async def _write_projected(self, folder: Path, projected: Json) -> None:
        mode = projected.get("defaultMode", 0o644)
        for source in projected.get("sources", []):
            if "serviceAccountToken" in source:
                if self._refreshing:
                    continue
                spec = source["serviceAccountToken"]
                token = TokenFile(
                    _safe_join(folder, spec["path"]),
                    spec.get("audience", ""),
                    int(spec.get("expirationSeconds", 3600)),
                    mode,
                )
                await self.refresh_token(token)
                self.tokens.append(token)
            elif "configMap" in source:
                self._write_keyed(folder, source["configMap"], secret=False, default_mode=mode)
            elif "secret" in source:
                self._write_keyed(folder, source["secret"], secret=True, default_mode=mode)
            elif "downwardAPI" in source:
                self._write_downward(folder, source["downwardAPI"], mode)
            else:
                raise ConfigError(f"projected source {sorted(source)} is not supported on the local node")

    async def refresh_token(self, token: TokenFile) -> None:
        """Ask the TokenRequest API for a token bound to the pod and write it."""
        value, expires_at = await self.fetch_token(token.audience, token.expiration_seconds)
        token.issued_at, token.expires_at = time.time(), expires_at
        _write_atomic(token.path, value.encode(), token.mode)

    def tokens_due(self, now: float) -> list[TokenFile]:
        """Tokens past 80% of their lifetime (when a kubelet refreshes them)."""
        return [t for t in self.tokens if now >= t.issued_at + 0.8 * (t.expires_at - t.issued_at)]


def mount_map(container: Json, host_paths: dict[str, Path]) -> dict[str, str]:
    """The container's mountPath -> host path table."""
    mapping: dict[str, str] = {}
    for mount in container.get("volumeMounts", []) or []:
        base = host_paths.get(mount["name"])
        if base is None:
            raise ConfigError(f"volumeMount {mount['name']!r} names no volume of the pod")
        host = base / mount["subPath"] if mount.get("subPath") else base
        if mount.get("subPath") and not host.exists():
            host.mkdir(parents=True)
        mapping[mount["mountPath"].rstrip("/") or "/"] = str(host)
    return mapping


class PathRewriter:
    """Rewrites container paths under mount paths to host paths (see the module docstring)."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = {k: v for k, v in mapping.items() if k != "/"}
        if self.mapping:
            alternatives = "|".join(re.escape(p) for p in sorted(self.mapping, key=len, reverse=True))
            self._pattern: re.Pattern[str] | None = re.compile(
                rf"(?<![^\s=:,'\"])({alternatives})(?=$|[/\s:,'\"])"
            )
        else:
            self._pattern = None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.mapping[m.group(1)], text)
