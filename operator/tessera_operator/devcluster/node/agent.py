"""The local node agent (`tessera dev node`): a kubelet whose "containers" are local processes.

It registers the Node, renews its Lease, watches the pods bound to it and runs each with a
PodWorker; on SIGTERM it stops every pod process (nothing is left behind) and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tessera_operator.devcluster.layout import ClusterState, Layout
from tessera_operator.devcluster.node.ipam import PodIPAllocator
from tessera_operator.devcluster.node.kubeapi import ApiError, KubeClient
from tessera_operator.devcluster.node.logserver import serve_logs
from tessera_operator.devcluster.node.nodeobject import (
    machine_resources,
    node_status,
    register_node,
    renew_lease,
)
from tessera_operator.devcluster.node.pod import PodWorker
from tessera_operator.devcluster.node.tasks import spawn
from tessera_operator.devcluster.processes import ProcessRecord
from tessera_operator.devcluster.profile import load_profile

Json = dict[str, Any]
log = logging.getLogger("tessera.local-node")
LEASE_RENEW_SECONDS = 10
STATUS_SECONDS = 60
SHUTDOWN_GRACE_CAP = 10.0


class NodeAgent:
    """Everything the local node shares between its pods (implements pod.NodeServices)."""

    def __init__(self, cluster_dir: Path) -> None:
        self.layout = Layout(cluster_dir)
        state = ClusterState.load(self.layout)
        if state is None:
            raise RuntimeError(f"no cluster state in {cluster_dir} (start it with `tessera dev cluster up`)")
        self.profile = load_profile(self.layout.profile)
        self.node_name = self.profile.local_node.name
        self.api_port = state.ports["apiserver"]
        self.log_port = state.ports["localNode"]
        self.version = state.kubernetes_version or "v0.0.0"
        pki = self.layout.pki
        self.client = KubeClient(state.server, pki / "ca.crt", pki / "local-node.crt", pki / "local-node.key")
        self.ipam = PodIPAllocator(self.profile.local_node.pod_cidr)
        self.pods_dir = self.layout.node_dir / "pods"
        self.logs_dir = self.layout.node_dir / "pod-logs"
        self.allocatable: dict[str, str] = {}
        self.workers: dict[str, PodWorker] = {}
        self._processes: dict[str, ProcessRecord] = {}
        self._stop = asyncio.Event()

    # ------------------------------------------------------------------ NodeServices
    def record_event(self, pod: Json, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1000],
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
        }
        log.info("%s/%s %s %s: %s", meta["namespace"], meta["name"], kind, reason, message)
        spawn(self._post_event(meta["namespace"], event))

    async def _post_event(self, namespace: str, event: Json) -> None:
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            await self.client.create(f"/api/v1/namespaces/{namespace}/events", event)

    def track_process(self, key: str, record: ProcessRecord | None) -> None:
        """Keep node/processes.json current, so `down` can sweep processes of a crashed agent."""
        if record is None:
            self._processes.pop(key, None)
        else:
            self._processes[key] = record
        target = self.layout.node_dir / "processes.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps([r.to_json() for r in self._processes.values()]))
        tmp.replace(target)

    def forget(self, uid: str) -> None:
        self.workers.pop(uid, None)

    # ------------------------------------------------------------------ main
    async def run(self) -> None:
        """Register, then sync pods until SIGTERM/SIGINT; then stop every pod's processes."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        for folder in (self.pods_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.allocatable = machine_resources(self.profile.local_node, self.layout.node_dir)
        since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = node_status(self.allocatable, since, self.log_port, self.version)
        node = await self._retry(lambda: register_node(self.client, self.profile.local_node, status))
        log.info("registered node %s", self.node_name)
        log_server = await serve_logs(self, "127.0.0.1", self.log_port)
        tasks = [
            asyncio.create_task(self._lease_loop(node)),
            asyncio.create_task(self._status_loop(since)),
            asyncio.create_task(self._pods_loop()),
        ]
        await self._stop.wait()
        log.info("stopping: terminating %d pod(s)", len(self.workers))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            *(
                w.terminate(min(w.termination_grace, SHUTDOWN_GRACE_CAP), delete_object=False)
                for w in list(self.workers.values())
            ),
            return_exceptions=True,
        )
        await log_server.cleanup()
        await self.client.close()

    async def _retry(self, call: Any) -> Json:
        delay = 0.2
        while True:
            try:
                result: Json = await call()
                return result
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                log.warning("%s (retrying)", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    async def _lease_loop(self, node: Json) -> None:
        failures = 0
        while True:
            try:
                await renew_lease(self.client, node)
                failures = 0
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                # Right after the apiserver starts, kube-node-lease may not exist yet: retry soon.
                failures += 1
                if failures > 3:
                    log.warning("lease renewal: %s", error)
            await asyncio.sleep(LEASE_RENEW_SECONDS if failures == 0 else 1.0)

    async def _status_loop(self, since: str) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            status = node_status(self.allocatable, since, self.log_port, self.version)
            with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
                await self.client.merge_patch(f"/api/v1/nodes/{self.node_name}/status", {"status": status})

    async def _pods_loop(self) -> None:
        """List, then watch, the pods bound to this node; relist whenever a watch ends."""
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        while True:
            try:
                listing = await self.client.request("GET", "/api/v1/pods", params=selector)
                present = {pod["metadata"]["uid"] for pod in listing["items"]}
                for uid in [u for u in self.workers if u not in present]:
                    self._pod_gone(uid)
                for pod in listing["items"]:
                    self._pod_seen(pod)
                version = listing["metadata"]["resourceVersion"]
                params = selector | {"resourceVersion": version, "timeoutSeconds": "240"}
                async for event in self.client.watch("/api/v1/pods", params):
                    kind, pod = event["type"], event["object"]
                    if kind in ("ADDED", "MODIFIED"):
                        self._pod_seen(pod)
                    elif kind == "DELETED":
                        self._pod_gone(pod["metadata"]["uid"])
                    elif kind == "ERROR":
                        break
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as error:
                log.warning("pod watch: %s", error)
                await asyncio.sleep(1)

    def _pod_seen(self, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            if pod["metadata"].get("deletionTimestamp"):
                spawn(self._delete_finished(pod))
            return
        worker = PodWorker(self, pod)
        self.workers[uid] = worker
        worker.start()
        worker.update(pod)

    async def _delete_finished(self, pod: Json) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            await self.client.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)

    def _pod_gone(self, uid: str) -> None:
        """The pod object vanished (force-deleted): stop its processes quickly."""
        worker = self.workers.get(uid)
        if worker is not None and not worker.terminating:
            spawn(worker.terminate(min(worker.termination_grace, 2.0), delete_object=False))


def run_agent(cluster_dir: Path) -> None:
    """Entry point of `tessera dev node`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(NodeAgent(cluster_dir).run())
