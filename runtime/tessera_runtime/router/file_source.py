"""Routes from a YAML file, for running the router outside Kubernetes; reloaded when the file changes.

    models:                      # or the list of models alone, at the top level
      - name: llama              # the Model's name (default: servedModelName)
        namespace: default       # default: default
        servedModelName: llama-3 # default: name
        aliases: [llama3]
        stable: v1               # optional, for X-Tessera-Version: stable
        candidate: v2            # optional
        versions:
          - version: v1
            weight: 90           # leave every weight out to split evenly
            endpoints: [http://127.0.0.1:8001, {url: http://127.0.0.1:8002, terminating: true}]
          - {version: v2, weight: 10, endpoints: [http://127.0.0.1:8003]}
    apiKeys:                     # used with --api-keys
      - {name: team-a, keyEnv: TEAM_A_KEY, models: [llama], rateLimit: 60/m}   # or key: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .auth import ApiKey, KeyStore, digest, parse_models, parse_rate
from .proxy import parse_target
from .table import EndpointState, ModelKey, ModelSpec, RoutingTable

log = logging.getLogger(__name__)

FILE_GROUP = "routes-file"


@dataclass
class Routes:
    """The parsed content of a routes file."""

    models: list[ModelSpec]
    groups: dict[tuple[ModelKey, str], tuple[str, list[EndpointState]]]
    keys: list[ApiKey]


def _url(text: str) -> str:
    parse_target(text)  # raises on anything but http://host[:port][/prefix]
    return text.rstrip("/")


def _endpoint(item: Any) -> EndpointState:
    if isinstance(item, str):
        return EndpointState(url=_url(item))
    if isinstance(item, dict) and isinstance(item.get("url"), str):
        terminating = bool(item.get("terminating", False))
        ready = bool(item.get("ready", not terminating))
        return EndpointState(url=_url(item["url"]), ready=ready, serving=bool(item.get("serving", True)),
                             terminating=terminating)
    raise ValueError(f"an endpoint is a URL or {{url: ...}}, not {item!r}")


def _api_key(item: Any) -> ApiKey:
    if not isinstance(item, dict):
        raise ValueError("each apiKeys entry is a mapping")
    key = item.get("key")
    if key is None and item.get("keyEnv"):
        key = os.environ.get(str(item["keyEnv"]))
    if not key:
        raise ValueError(f"API key {item.get('name', '?')!r} has no key (key or keyEnv)")
    return ApiKey(name=str(item.get("name", "routes-file")), digest=digest(str(key)),
                  models=parse_models(item.get("models")), rate=parse_rate(item.get("rateLimit")))


def parse_routes(data: Any) -> Routes:
    """Validate and convert a routes document (raises ValueError with what is wrong)."""
    if data is None:
        data = []
    models_data = data.get("models", []) if isinstance(data, dict) else data
    keys_data = data.get("apiKeys", []) if isinstance(data, dict) else []
    if not isinstance(models_data, list) or not isinstance(keys_data, list):
        raise ValueError("routes: `models` and `apiKeys` must be lists")
    models: list[ModelSpec] = []
    groups: dict[tuple[ModelKey, str], tuple[str, list[EndpointState]]] = {}
    for entry in models_data:
        if not isinstance(entry, dict):
            raise ValueError(f"a model entry is a mapping, not {entry!r}")
        served = entry.get("servedModelName") or entry.get("name")
        if not isinstance(served, str) or not served:
            raise ValueError("each model needs a name or a servedModelName")
        name = str(entry.get("name") or served)
        namespace = str(entry.get("namespace", "default"))
        versions = entry.get("versions") or []
        if not isinstance(versions, list):
            raise ValueError(f"model {name}: versions must be a list")
        traffic: list[tuple[str, int]] = []
        for index, version_entry in enumerate(versions):
            if not isinstance(version_entry, dict):
                raise ValueError(f"model {name}: a version is a mapping")
            version = str(version_entry.get("version", f"v{index}"))
            if "weight" in version_entry:
                weight = int(version_entry["weight"])
                if weight < 0:
                    raise ValueError(f"model {name}: weights are not negative")
                traffic.append((version, weight))
            endpoints = [_endpoint(e) for e in version_entry.get("endpoints") or []]
            groups[((namespace, name), f"{FILE_GROUP}/{version}")] = (version, endpoints)
        aliases = entry.get("aliases") or []
        models.append(ModelSpec(namespace=namespace, name=name, served_name=served,
                                aliases=tuple(str(a) for a in aliases), traffic=tuple(traffic),
                                stable=entry.get("stable"), candidate=entry.get("candidate")))
    return Routes(models=models, groups=groups, keys=[_api_key(k) for k in keys_data])


def apply_routes(routes: Routes, table: RoutingTable, keys: KeyStore) -> None:
    """Make the table and key store match the file."""
    table.replace_models(routes.models)
    table.replace_groups(routes.groups)
    keys.set_group(FILE_GROUP, routes.keys)


class FileSource:
    """Loads a routes file, then reloads it whenever its modification time or size changes."""

    def __init__(self, path: Path, table: RoutingTable, keys: KeyStore, interval: float = 1.0) -> None:
        self.path = path
        self.table = table
        self.keys = keys
        self.interval = interval
        self.synced = asyncio.Event()
        self._stamp: tuple[float, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Read and apply the file (raises on a bad file)."""
        stat = self.path.stat()
        routes = parse_routes(yaml.safe_load(self.path.read_text()))
        apply_routes(routes, self.table, self.keys)
        self._stamp = (stat.st_mtime, stat.st_size)
        self.synced.set()
        log.info("routes loaded from %s: %d models", self.path, len(routes.models))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                stat = self.path.stat()
                if (stat.st_mtime, stat.st_size) != self._stamp:
                    self.load()
            except (OSError, ValueError, yaml.YAMLError) as exc:
                # A half-written or broken file keeps the last good routes in force.
                log.warning("routes file %s not reloaded: %s", self.path, exc)

    def start(self) -> None:
        """Load now and watch for changes (interval 0: never reload)."""
        self.load()
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
