"""Routes from the Kubernetes API by watch: Models, their EndpointSlices, and API-key Secrets.

Each kind has one thread that lists (to learn the full state and a resourceVersion), then watches
from there with bookmarks; a watch that ends is resumed from the last resourceVersion seen, and one
answered `410 Gone` (the version is too old) lists again. Threads hand every change to the event
loop with `call_soon_threadsafe`, so the routing table is only ever touched on the loop.
The same client patches `tessera.dev/demand-at` on Models (JSON merge patch, metadata only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tessera_runtime.kube_incluster import load_incluster_config

from .auth import API_KEY_LABEL, KeyStore, key_from_secret
from .kube_objects import (
    DEMAND_ANNOTATION,
    GROUP,
    MODEL_LABEL,
    PLURAL,
    VERSION,
    model_spec,
    object_key,
    pod_endpoints,
    slice_endpoints,
)
from .table import EndpointState, ModelKey, RoutingTable

log = logging.getLogger(__name__)

WATCH_SECONDS = 240
ListFunction = Callable[..., Any]
EndpointParser = Callable[[dict[str, Any]], tuple[ModelKey, str, str, list[EndpointState]] | None]


class _Gone(Exception):
    """The watch's resourceVersion expired: list again."""


class ResourceWatcher(threading.Thread):
    """List-then-watch of one kind, delivering `on_list(items)` and `on_event(type, obj)` on the loop."""

    def __init__(self, kind: str, list_function: ListFunction, kwargs: dict[str, Any],
                 loop: asyncio.AbstractEventLoop, on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None]) -> None:
        super().__init__(name=f"watch-{kind}", daemon=True)
        self.kind = kind
        self.list_function = list_function
        self.kwargs = kwargs
        self.loop = loop
        self.on_list = on_list
        self.on_event = on_event
        self.stopping = threading.Event()
        self._response: Any = None

    def _deliver(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the router is shutting down
            self.stopping.set()

    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            extra = {"_continue": token} if token else {}
            response = self.list_function(**self.kwargs, limit=500, _preload_content=False,
                                          _request_timeout=30, **extra)
            body = json.loads(response.data)
            items.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                self._deliver(self.on_list, items)
                return str((body.get("metadata") or {}).get("resourceVersion", ""))

    def _events(self, resource_version: str) -> Iterator[dict[str, Any]]:
        response = self.list_function(
            **self.kwargs, watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS, _preload_content=False, _request_timeout=(10, WATCH_SECONDS + 30),
        )
        self._response = response
        try:
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release_conn()

    def run(self) -> None:
        """List, watch, resume, relist on 410; back off on errors; until stopped."""
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                resource_version = self._list()
                backoff = 0.5
                while not self.stopping.is_set():
                    for event in self._events(resource_version):
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                raise _Gone()
                            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                        resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version)
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            self._deliver(self.on_event, kind, obj)
            except _Gone:
                log.info("%s watch expired (410 Gone): listing again", self.kind)
                continue
            except ApiException as exc:
                if exc.status == 410:
                    continue
                log.warning("%s watch failed (%s %s); retrying in %.1f s", self.kind, exc.status, exc.reason, backoff)
            except Exception as exc:
                if self.stopping.is_set():
                    return
                log.warning("%s watch failed (%s); retrying in %.1f s", self.kind, exc, backoff)
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def stop(self) -> None:
        """Ask the thread to end (it is a daemon: an open watch does not keep the process alive)."""
        self.stopping.set()
        response = self._response
        if response is not None:
            # Interrupt the blocking read by shutting the socket down (urllib3 >= 2.3); closing the
            # response from this thread would wait for the watch's next event instead.
            with contextlib.suppress(Exception):
                response.shutdown()


def api_client(kubeconfig: Path | None, in_cluster: bool) -> client.ApiClient:
    """An API client from the in-cluster service account or a kubeconfig file (default location when None)."""
    configuration = client.Configuration()
    if in_cluster:
        load_incluster_config(configuration)
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None, client_configuration=configuration)
    return client.ApiClient(configuration)


class KubeSource:
    """Keeps the routing table (and, with API keys on, the key store) in step with the cluster.

    Endpoints come from EndpointSlices (the default) or, with `endpoints_from="pods"`, from the
    serving pods themselves (for clusters whose pod IPs EndpointSlices cannot hold).
    """

    def __init__(self, table: RoutingTable, keys: KeyStore, api: client.ApiClient,
                 namespace: str | None = None,
                 endpoints_from: Literal["endpointslices", "pods"] = "endpointslices",
                 api_key_namespace: str | None = None) -> None:
        self.table = table
        self.api_key_namespace = api_key_namespace
        self.keys = keys
        self.api = api
        self.namespace = namespace
        self.endpoints_from = endpoints_from
        self._parse_endpoints: EndpointParser = pod_endpoints if endpoints_from == "pods" else slice_endpoints
        self.synced = asyncio.Event()
        self._listed: set[str] = set()
        self._watchers: list[ResourceWatcher] = []
        self._group_models: dict[ModelKey, tuple[ModelKey, str]] = {}

    # --- handlers, run on the loop -------------------------------------------------------------

    def _listed_kind(self, kind: str) -> None:
        self._listed.add(kind)
        if self._listed >= {w.kind for w in self._watchers}:
            self.synced.set()

    def _models_listed(self, items: list[dict[str, Any]]) -> None:
        self.table.replace_models(model_spec(obj) for obj in items)
        self._listed_kind("models")

    def _model_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.table.remove_model(object_key(obj))
        else:
            self.table.upsert_model(model_spec(obj))

    def _endpoints_listed(self, items: list[dict[str, Any]]) -> None:
        groups: dict[tuple[ModelKey, str], tuple[str, list[EndpointState]]] = {}
        self._group_models = {}
        for obj in items:
            parsed = self._parse_endpoints(obj)
            if parsed is not None:
                model, group, version, endpoints = parsed
                groups[(model, group)] = (version, endpoints)
                self._group_models[object_key(obj)] = (model, group)
        self.table.replace_groups(groups)
        self._listed_kind(self.endpoints_from)

    def _endpoints_event(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        previous = self._group_models.pop(key, None)
        parsed = None if kind == "DELETED" else self._parse_endpoints(obj)
        if previous is not None and (parsed is None or (parsed[0], parsed[1]) != previous):
            self.table.remove_group(*previous)
        if parsed is not None:
            model, group, version, endpoints = parsed
            self._group_models[key] = (model, group)
            self.table.set_group(model, group, version, endpoints)

    def _secrets_listed(self, items: list[dict[str, Any]]) -> None:
        groups = {}
        for obj in items:
            key = self._secret_key(obj)
            if key is not None:
                groups["/".join(object_key(obj))] = [key]
        self.keys.replace(groups)
        self._listed_kind("secrets")

    def _secret_event(self, kind: str, obj: dict[str, Any]) -> None:
        group = "/".join(object_key(obj))
        key = None if kind == "DELETED" else self._secret_key(obj)
        if key is None:
            self.keys.remove_group(group)
        else:
            self.keys.set_group(group, [key])

    @staticmethod
    def _secret_key(obj: dict[str, Any]) -> Any:
        try:
            return key_from_secret(obj)
        except (ValueError, UnicodeDecodeError) as exc:  # never log the Secret's data
            log.warning("API-key Secret %s/%s ignored: %s", *object_key(obj), type(exc).__name__)
            return None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the watch threads (API-key Secrets only when keys are required)."""
        loop = asyncio.get_running_loop()
        custom = client.CustomObjectsApi(self.api)
        discovery = client.DiscoveryV1Api(self.api)
        core = client.CoreV1Api(self.api)
        ns = self.namespace
        model_kwargs: dict[str, Any] = {"label_selector": MODEL_LABEL}
        secret_kwargs: dict[str, Any] = {"label_selector": f"{API_KEY_LABEL}=true"}
        models: tuple[ListFunction, dict[str, Any]]
        endpoints: tuple[ListFunction, dict[str, Any]]
        secrets: tuple[ListFunction, dict[str, Any]]
        pods = self.endpoints_from == "pods"
        if ns:
            models = (custom.list_namespaced_custom_object,
                      {"group": GROUP, "version": VERSION, "namespace": ns, "plural": PLURAL})
            endpoints = (core.list_namespaced_pod if pods else discovery.list_namespaced_endpoint_slice,
                         {"namespace": ns, **model_kwargs})
            secrets = (core.list_namespaced_secret, {"namespace": ns, **secret_kwargs})
        else:
            models = (custom.list_cluster_custom_object, {"group": GROUP, "version": VERSION, "plural": PLURAL})
            endpoints = (core.list_pod_for_all_namespaces if pods else discovery.list_endpoint_slice_for_all_namespaces,
                         model_kwargs)
            secrets = (core.list_secret_for_all_namespaces, secret_kwargs)
        if self.api_key_namespace:
            # Keys live in one namespace (the chart's): the router needs no right to other Secrets.
            secrets = (core.list_namespaced_secret, {"namespace": self.api_key_namespace, **secret_kwargs})
        self._watchers = [
            ResourceWatcher("models", models[0], models[1], loop, self._models_listed, self._model_event),
            ResourceWatcher(self.endpoints_from, endpoints[0], endpoints[1], loop, self._endpoints_listed,
                            self._endpoints_event),
        ]
        if self.keys.enabled:
            self._watchers.append(
                ResourceWatcher("secrets", secrets[0], secrets[1], loop, self._secrets_listed, self._secret_event))
        for watcher in self._watchers:
            watcher.start()

    def stop(self) -> None:
        """Stop the watch threads."""
        for watcher in self._watchers:
            watcher.stop()

    async def mark_demand(self, key: ModelKey) -> None:
        """Patch `tessera.dev/demand-at: <now, RFC 3339 UTC>` onto the Model (merge patch, metadata only)."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"metadata": {"annotations": {DEMAND_ANNOTATION: stamp}}}
        custom = client.CustomObjectsApi(self.api)
        await asyncio.to_thread(
            custom.patch_namespaced_custom_object, GROUP, VERSION, key[0], PLURAL, key[1], body,
            _content_type="application/merge-patch+json", _request_timeout=10,
        )
