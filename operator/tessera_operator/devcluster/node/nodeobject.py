"""The local node's Node object, Lease and status heartbeat (what a kubelet registers and renews)."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from tessera_operator.devcluster.node.kubeapi import ApiError, KubeClient
from tessera_operator.devcluster.profile import LocalNode

Json = dict[str, Any]
LEASE_SECONDS = 40
NODE_IP = "127.0.0.1"


def micro_time(moment: datetime.datetime | None = None) -> str:
    """Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def machine_resources(local: LocalNode, work_dir: Path) -> dict[str, str]:
    """Capacity from this machine: CPUs, memory (from /proc/meminfo), disk of the work dir."""
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        memory_kib = 8 * 1024 * 1024
    disk = shutil.disk_usage(work_dir)
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory_kib}Ki",
        "pods": str(local.max_pods),
        "ephemeral-storage": str(disk.total),
    }


def _conditions(since: str) -> list[Json]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entries = [
        ("Ready", "True", "KubeletReady", "tessera local node agent is posting ready status"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure reported"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure reported"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure reported"),
    ]
    return [
        {
            "type": t,
            "status": s,
            "reason": r,
            "message": m,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }
        for t, s, r, m in entries
    ]


def node_status(resources: dict[str, str], since: str, log_port: int, version: str) -> Json:
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": _conditions(since),
        "addresses": [
            {"type": "InternalIP", "address": NODE_IP},
            {"type": "Hostname", "address": platform.node()},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": log_port}},
        "nodeInfo": {
            "architecture": machine,
            "operatingSystem": "linux",
            "kernelVersion": platform.release(),
            "osImage": "tessera local node (processes, no containers)",
            "containerRuntimeVersion": "tessera-local://1",
            "kubeletVersion": version,
            "kubeProxyVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


async def register_node(client: KubeClient, local: LocalNode, status: Json) -> Json:
    """Create the Node (labels, taints, status), or refresh the status of an existing one."""
    labels = {
        "kubernetes.io/hostname": local.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": status["nodeInfo"]["architecture"],
    } | local.labels
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": local.name, "labels": labels},
        "spec": {"taints": [t.model_dump() for t in local.taints]},
        "status": status,
    }
    try:
        return await client.create("/api/v1/nodes", body)
    except ApiError as error:
        if error.status != 409:
            raise
    return await client.merge_patch(f"/api/v1/nodes/{local.name}/status", {"status": status})


async def renew_lease(client: KubeClient, node: Json) -> None:
    """Renew (or create) the node's Lease in kube-node-lease, the heartbeat the node controller reads."""
    name = node["metadata"]["name"]
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
    try:
        await client.merge_patch(path, {"spec": {"renewTime": micro_time(), "holderIdentity": name}})
        return
    except ApiError as error:
        if error.status != 404:
            raise
    await client.create(
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
                ],
            },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": micro_time(),
            },
        },
    )
