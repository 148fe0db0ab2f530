"""One pod on the local node: its sandbox (IP, folders, volumes, token), containers, status, deletion."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from tessera_operator.devcluster.node.container import ContainerRunner, now_rfc3339
from tessera_operator.devcluster.node.ipam import PodIPAllocator
from tessera_operator.devcluster.node.kubeapi import ApiError, KubeClient
from tessera_operator.devcluster.node.launch import Launch, build_launch
from tessera_operator.devcluster.node.podenv import (
    ConfigError,
    PodContext,
    container_env,
    host_base_env,
    referenced_objects,
)
from tessera_operator.devcluster.node.podstatus import pod_status
from tessera_operator.devcluster.node.tasks import spawn
from tessera_operator.devcluster.node.volumes import (
    SERVICE_ACCOUNT_MOUNT,
    PathRewriter,
    VolumeMaterialiser,
    mount_map,
)
from tessera_operator.devcluster.paths import venv_bin_dir
from tessera_operator.devcluster.processes import ProcessRecord
from tessera_operator.devcluster.profile import Profile, RestartBackoff

Json = dict[str, Any]
log = logging.getLogger("tessera.local-node")
HOST_IP = "127.0.0.1"
RETRYABLE = (ApiError, aiohttp.ClientError, TimeoutError, ConfigError)
VOLUME_SYNC_SECONDS = 10.0


class NodeServices(Protocol):
    """What pods share: the API client, the node's identity and the agent's bookkeeping."""

    client: KubeClient
    node_name: str
    profile: Profile
    ipam: PodIPAllocator
    pods_dir: Path
    logs_dir: Path
    api_port: int
    allocatable: dict[str, str]

    def record_event(self, pod: Json, kind: str, reason: str, message: str) -> None: ...
    def track_process(self, key: str, record: ProcessRecord | None) -> None: ...
    def forget(self, uid: str) -> None: ...


@dataclass
class Conditions:
    """Pod conditions with stable lastTransitionTime."""

    values: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # type -> (status, reason, time)

    def set(self, kind: str, ok: bool, reason: str = "") -> None:
        status = "True" if ok else "False"
        old = self.values.get(kind)
        when = old[2] if old and old[0] == status else now_rfc3339()
        self.values[kind] = (status, "" if ok else reason, when)


class PodWorker:
    """Runs one pod bound to the local node."""

    def __init__(self, services: NodeServices, pod: Json) -> None:
        self.services = services
        self.pod = pod
        meta, spec = pod["metadata"], pod["spec"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.key = f"{self.namespace}_{self.name}_{self.uid}"
        self.pod_dir = services.pods_dir / self.key
        self.pod_ip = self._choose_ip(pod)
        self.backoff: RestartBackoff = services.profile.local_node.restart_backoff
        self.termination_grace = float(spec.get("terminationGracePeriodSeconds", 30))
        self.context = PodContext(pod, self.pod_ip, HOST_IP, services.allocatable)
        self.volumes = VolumeMaterialiser(self.pod_dir, self.context, self._request_token)
        policy = spec.get("restartPolicy", "Always")
        self.init_runners = [
            ContainerRunner(
                c,
                self,
                "sidecar" if c.get("restartPolicy") == "Always" else "init",
                "Never" if policy == "Never" else "OnFailure",
            )
            for c in spec.get("initContainers") or []
        ]
        self.runners = [ContainerRunner(c, self, "main", policy) for c in spec.get("containers") or []]
        previous = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        for runner in self.runners:
            runner.adopt(previous.get(runner.name, {}))
        self.conditions = Conditions()
        self.sandbox_ready = self.initialized = self.terminating = False
        self.failed_reason: tuple[str, str] | None = None
        self.main_done = False
        self.start_time = now_rfc3339()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._terminated = asyncio.Event()
        self._published: Json | None = None

    def _choose_ip(self, pod: Json) -> str:
        if pod["spec"].get("hostNetwork"):
            return HOST_IP
        existing = (pod.get("status") or {}).get("podIP")
        if existing and self.services.ipam.reserve(existing):
            return str(existing)
        return self.services.ipam.allocate()

    # ------------------------------------------------------------------ PodRuntime
    def launch(self, container: Json) -> Launch:
        mapping = mount_map(container, self.volumes.host_paths)
        base = host_base_env(str(venv_bin_dir())) | {
            "HOSTNAME": self.name,
            "HOME": str(self.pod_dir / "home"),
            "TMPDIR": str(self.pod_dir / "tmp"),
            "KUBERNETES_SERVICE_HOST": HOST_IP,
            "KUBERNETES_SERVICE_PORT": str(self.services.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.services.api_port),
            "KUBERNETES_PORT": f"tcp://{HOST_IP}:{self.services.api_port}",
        }
        host_env = {
            "TESSERA_LOCAL_NODE": self.services.node_name,
            "TESSERA_POD_DIR": str(self.pod_dir),
            "TESSERA_MOUNT_MAP": json.dumps(mapping, sort_keys=True),
        }
        if SERVICE_ACCOUNT_MOUNT in mapping:
            host_env["TESSERA_SERVICEACCOUNT_DIR"] = mapping[SERVICE_ACCOUNT_MOUNT]
        env = container_env(container, self.context, base)
        rewriter = PathRewriter(mapping)
        return build_launch(container, self.services.profile, env, rewriter, self.pod_dir, host_env)

    def log_dir(self, container_name: str) -> Path:
        return self.services.logs_dir / self.key / container_name

    def notify(self) -> None:
        self._dirty.set()

    def event(self, kind: str, reason: str, message: str) -> None:
        self.services.record_event(self.pod, kind, reason, message)

    def track(self, key: str, record: ProcessRecord | None) -> None:
        self.services.track_process(f"{self.uid}/{key}", record)

    async def refresh_references(self) -> None:
        """Fetch the ConfigMaps and Secrets the pod references (None when absent)."""
        config_maps, secrets = referenced_objects(self.pod)
        base = f"/api/v1/namespaces/{self.namespace}"
        for name in config_maps:
            self.context.config_maps[name] = await self._get_referenced(f"{base}/configmaps/{name}")
        for name in secrets:
            self.context.secrets[name] = await self._get_referenced(f"{base}/secrets/{name}")

    async def _get_referenced(self, path: str) -> Json | None:
        try:
            return await self.services.client.get(path)
        except ApiError as error:
            # Right after binding the Node authorizer may not know the pod yet: retry later.
            raise ConfigError(f"cannot read {path}: {error.message}") from error

    async def _request_token(self, audience: str, expiration_seconds: int) -> tuple[str, float]:
        account = self.pod["spec"].get("serviceAccountName") or "default"
        spec: Json = {
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
        }
        if audience:
            spec["audiences"] = [audience]
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        try:
            answer = await self.services.client.create(
                path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
            )
        except ApiError as error:
            raise ConfigError(f"token request for {account}: {error.message}") from error
        expires = answer["status"]["expirationTimestamp"]
        return answer["status"]["token"], datetime.datetime.fromisoformat(expires).timestamp()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._main(), name=f"pod {self.key}"),
            asyncio.create_task(self._publish_loop(), name=f"status {self.key}"),
            asyncio.create_task(self._refresh_volumes(), name=f"volumes {self.key}"),
        ]
        self.notify()

    def update(self, pod: Json) -> None:
        """A newer version of the pod object arrived from the watch."""
        self.pod = pod
        self.context.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and not self.terminating:
            grace = float(meta.get("deletionGracePeriodSeconds", self.termination_grace))
            spawn(self.terminate(grace, delete_object=True))

    async def _main(self) -> None:
        await self._prepare_sandbox()
        for runner in self.init_runners:
            if self.terminating:
                return
            if runner.kind == "sidecar":
                spawn(runner.run())
                await runner.became_started.wait()
                continue
            await runner.run()
            if not runner.succeeded:
                if not self.terminating:
                    self.failed_reason = ("InitContainerFailed", f"init container {runner.name} failed")
                    self.notify()
                return
        self.initialized = True
        self.notify()
        await asyncio.gather(*(runner.run() for runner in self.runners))
        if not self.terminating:
            self.main_done = True
            loop_time = asyncio.get_running_loop().time()
            await asyncio.gather(*(r.stop(loop_time + self.termination_grace) for r in self.init_runners))
            self.notify()

    async def _prepare_sandbox(self) -> None:
        delay = 0.2
        while not self.terminating:
            try:
                for folder in ("work", "home", "tmp"):
                    (self.pod_dir / folder).mkdir(parents=True, exist_ok=True)
                await self.refresh_references()
                await self.volumes.materialise(self.pod["spec"].get("volumes") or [])
                self.sandbox_ready = True
                self.notify()
                return
            except RETRYABLE as error:
                message = f"setting up the pod: {error}"
                for runner in self.init_runners + self.runners:
                    runner.state = {"waiting": {"reason": "ContainerCreating", "message": message}}
                if delay >= 1.6:  # the first attempts may race the Node authorizer: stay quiet
                    self.event("Warning", "FailedMount", message)
                self.notify()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _refresh_volumes(self) -> None:
        """Keep ConfigMap/Secret/downward-API files current and tokens fresh, as a kubelet does."""
        while True:
            await asyncio.sleep(VOLUME_SYNC_SECONDS)
            if not self.sandbox_ready or self.terminating:
                continue
            with contextlib.suppress(*RETRYABLE):
                await self.refresh_references()
                await self.volumes.materialise(self.pod["spec"].get("volumes") or [], refresh=True)
            for token in self.volumes.tokens_due(time.time()):
                with contextlib.suppress(*RETRYABLE):
                    await self.volumes.refresh_token(token)

    async def terminate(self, grace: float, delete_object: bool) -> None:
        """Stop every container (SIGTERM, then SIGKILL after `grace`), then remove the pod object."""
        if self.terminating:
            await self._terminated.wait()
            return
        self.terminating = True
        deadline = asyncio.get_running_loop().time() + grace
        await asyncio.gather(*(runner.stop(deadline) for runner in self.runners))
        await asyncio.gather(*(runner.stop(deadline) for runner in reversed(self.init_runners)))
        main, publisher, tokens = self._tasks
        tokens.cancel()
        # With every container stopped the main task ends by itself; cancel it if it is still
        # waiting (e.g. between two attempts to set the pod up).
        await asyncio.wait({main}, timeout=2)
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await main
        if delete_object:
            with contextlib.suppress(*RETRYABLE):
                await self._publish()
            await self._delete_object()
        publisher.cancel()
        self.services.ipam.release(self.pod_ip if self.pod_ip != HOST_IP else None)
        shutil.rmtree(self.pod_dir, ignore_errors=True)
        self.services.forget(self.uid)
        self._terminated.set()

    async def _delete_object(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        for attempt in range(5):
            try:
                await self.services.client.delete(
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.name}", body
                )
                return
            except ApiError as error:
                if error.status == 409:  # a different pod of the same name: ours is gone
                    return
                log.warning("deleting pod %s: %s (attempt %d)", self.key, error, attempt + 1)
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("deleting pod %s: %s (attempt %d)", self.key, error, attempt + 1)
            await asyncio.sleep(1)

    # ------------------------------------------------------------------ status
    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.05)  # coalesce bursts of changes into one patch
            self._dirty.clear()
            try:
                await self._publish()
            except ApiError as error:
                if error.status in (404, 409):  # gone, or replaced by a new pod of the same name
                    return
                log.warning("status of %s: %s", self.key, error)
                await asyncio.sleep(1)
                self._dirty.set()
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("status of %s: %s", self.key, error)
                await asyncio.sleep(1)
                self._dirty.set()

    async def _publish(self) -> None:
        status = pod_status(self)
        if status == self._published:
            return
        # metadata.uid in the patch is a precondition: never touch a new pod of the same name.
        await self.services.client.merge_patch(
            f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
            {"metadata": {"uid": self.uid}, "status": status},
        )
        self._published = status
