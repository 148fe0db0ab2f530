"""A local pod's status as a kubelet reports it: phase, conditions, container statuses, IPs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tessera_operator.devcluster.node.pod import PodWorker

Json = dict[str, Any]
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def _phase(worker: PodWorker) -> str:
    if worker.failed_reason is not None:
        return "Failed"
    if worker.main_done:
        return "Succeeded" if all(r.succeeded for r in worker.runners) else "Failed"
    if worker.initialized and any(
        r.pid is not None or r.restart_count > 0 or "terminated" in r.state for r in worker.runners
    ):
        return "Running"
    return "Pending"


def pod_status(worker: PodWorker) -> Json:
    """The full status the worker patches onto its pod (lists are replaced whole by a merge patch)."""
    phase = _phase(worker)
    unready = [r.name for r in worker.runners if not r.ready]
    uninitialized = [r.name for r in worker.init_runners if r.kind == "init" and not r.succeeded]
    containers_ready = worker.initialized and not unready
    gates = [g["conditionType"] for g in worker.pod["spec"].get("readinessGates") or []]
    observed = {c["type"]: c for c in (worker.pod.get("status") or {}).get("conditions") or []}
    gates_ok = all(observed.get(g, {}).get("status") == "True" for g in gates)

    conditions = worker.conditions
    conditions.set("PodReadyToStartContainers", worker.sandbox_ready)
    conditions.set("Initialized", worker.initialized, "ContainersNotInitialized")
    if phase in ("Succeeded", "Failed"):
        conditions.set("ContainersReady", False, "PodCompleted")
        conditions.set("Ready", False, "PodCompleted")
    else:
        conditions.set("ContainersReady", containers_ready, "ContainersNotReady")
        conditions.set(
            "Ready",
            containers_ready and gates_ok,
            "ContainersNotReady" if not containers_ready else "ReadinessGatesNotReady",
        )
    messages = {
        "Initialized": f"containers with incomplete status: [{' '.join(uninitialized)}]",
        "ContainersReady": f"containers with unready status: [{' '.join(unready)}]",
        "Ready": f"containers with unready status: [{' '.join(unready)}]",
    }
    entries: list[Json] = []
    for kind in OWN_CONDITIONS:
        value, reason, when = conditions.values[kind]
        entry: Json = {"type": kind, "status": value, "lastTransitionTime": when}
        if reason:
            entry["reason"] = reason
            if kind in messages and reason != "PodCompleted":
                entry["message"] = messages[kind]
        entries.append(entry)
    # Keep conditions other components own (PodScheduled, DisruptionTarget, readiness gates).
    entries += [c for kind, c in observed.items() if kind not in OWN_CONDITIONS]

    status: Json = {
        "phase": phase,
        "conditions": entries,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": worker.pod_ip,
        "podIPs": [{"ip": worker.pod_ip}],
        "startTime": worker.start_time,
        "containerStatuses": [r.status() for r in worker.runners],
    }
    if worker.init_runners:
        status["initContainerStatuses"] = [r.status() for r in worker.init_runners]
    if worker.failed_reason is not None:
        status["reason"], status["message"] = worker.failed_reason
    return status
