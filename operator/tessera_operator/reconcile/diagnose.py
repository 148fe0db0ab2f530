"""What is wrong with a version's pods and workload, in words a person can act on (pure).

Reads pod conditions (the scheduler's PodScheduled=False message), init-container and container
states (fetch failures, crash loops, missing Secrets, image problems) and the workload's own
conditions (pods the controller could not create, e.g. refused by PodSecurity admission).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

# Reasons, most blocking first: the first found names the condition.
SEVERITY = (
    "PlanInfeasible", "InvalidSpec", "ApplyFailed", "LeaderWorkerSetMissing", "PodCreationFailed",
    "Unschedulable", "ConfigError", "ImagePullFailed", "FetchFailed", "CrashLooping", "Loading",
)
BLOCKING = frozenset(SEVERITY) - {"Loading"}
FETCH_CONTAINER = "fetch-weights"
ENGINE_CONTAINER = "engine"
_IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ImageNotMapped", "ErrImageNeverPull"})
_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class Problem:
    """One reason a version is not (fully) serving, with what to do about it."""

    reason: str
    message: str

    @property
    def blocking(self) -> bool:
        """Whether waiting will not fix it (Loading is the only non-blocking reason)."""
        return self.reason in BLOCKING


def most_severe(problems: list[Problem]) -> Problem | None:
    """The problem that names the condition: the most blocking one, first found among equals."""
    if not problems:
        return None
    return min(problems, key=lambda p: SEVERITY.index(p.reason) if p.reason in SEVERITY else len(SEVERITY))


def _tail(text: str, lines: int = 6, chars: int = 800) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-chars:]


def _terminated_detail(state: Json) -> str:
    terminated = state.get("terminated") or {}
    parts = [f"exit code {terminated.get('exitCode')}"]
    if terminated.get("reason"):
        parts.append(str(terminated["reason"]))
    if terminated.get("message"):
        parts.append(_tail(str(terminated["message"])))
    return ", ".join(parts)


def _fetch_problem(pod_name: str, status: Json) -> Problem | None:
    state, last = status.get("state") or {}, status.get("lastState") or {}
    waiting = state.get("waiting") or {}
    failed = state if (state.get("terminated") or {}).get("exitCode", 0) != 0 else None
    if failed is None and (waiting.get("reason") == "CrashLoopBackOff" or (last.get("terminated") or {}).get("exitCode", 0)):
        failed = last
    if failed is not None and failed.get("terminated"):
        return Problem(
            "FetchFailed",
            f"pod {pod_name}: fetching the weights failed ({_terminated_detail(failed)}). "
            "Check spec.source (uri, revision) and its credentials Secret; the pod retries with backoff.",
        )
    return None


def _waiting_problem(pod_name: str, container: str, waiting: Json) -> Problem | None:
    reason, message = str(waiting.get("reason") or ""), str(waiting.get("message") or "")
    # A node that cannot set the pod up because a Secret, ConfigMap or key of a volume is missing keeps
    # its containers in ContainerCreating and says so; waiting would never end.
    if reason in _CONFIG_REASONS or (reason == "ContainerCreating" and "not found" in message):
        return Problem("ConfigError", f"pod {pod_name}, container {container}: {reason}: {message}. "
                       "Create the referenced Secret or ConfigMap (e.g. spec.source.credentialsSecretRef).")
    if reason in _IMAGE_REASONS:
        return Problem("ImagePullFailed", f"pod {pod_name}, container {container}: {reason}: {message}. "
                       "Check spec.engine.image and the registry credentials.")
    return None


def _engine_problem(pod_name: str, status: Json) -> Problem | None:
    state, last = status.get("state") or {}, status.get("lastState") or {}
    waiting = state.get("waiting") or {}
    restarts = int(status.get("restartCount") or 0)
    if waiting.get("reason") == "CrashLoopBackOff" or (restarts >= 2 and last.get("terminated")):
        detail = _terminated_detail(last) if last.get("terminated") else str(waiting.get("message") or "")
        return Problem(
            "CrashLooping",
            f"pod {pod_name}: the engine keeps exiting ({restarts} restarts; last: {detail}). "
            "See `kubectl logs --previous`; OOMKilled means the memory request is too small.",
        )
    if "running" in state and not status.get("ready"):
        what = "loading the model" if not status.get("started") else "warming up"
        return Problem("Loading", f"pod {pod_name}: {what}")
    return None


def pod_problems(pod: Json) -> list[Problem]:
    """What keeps one pod from serving (empty when it is ready or simply not started yet)."""
    meta, status = pod.get("metadata", {}), pod.get("status", {}) or {}
    name = str(meta.get("name", "?"))
    if meta.get("deletionTimestamp"):
        return []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            return [Problem("Unschedulable", f"pod {name} cannot be scheduled: {condition.get('message', '')}")]
    problems: list[Problem] = []
    for init in status.get("initContainerStatuses") or []:
        waiting = (init.get("state") or {}).get("waiting") or {}
        found = _waiting_problem(name, init.get("name", "?"), waiting)
        if found is None and init.get("name") == FETCH_CONTAINER:
            found = _fetch_problem(name, init)
        if found is None and "running" in (init.get("state") or {}):
            found = Problem("Loading", f"pod {name}: fetching the weights")
        if found is not None:
            problems.append(found)
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        found = _waiting_problem(name, container.get("name", "?"), waiting)
        if found is None and container.get("name") == ENGINE_CONTAINER:
            found = _engine_problem(name, container)
        if found is not None:
            problems.append(found)
    return problems


def workload_problems(workload: Json | None) -> list[Problem]:
    """Problems the workload controller reports (pods it could not create, a stalled rollout)."""
    if workload is None:
        return []
    name = workload.get("metadata", {}).get("name", "?")
    problems = []
    for condition in (workload.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            problems.append(Problem("PodCreationFailed", f"{workload.get('kind')} {name} cannot create pods: "
                                    f"{condition.get('message', '')}"))
    return problems


def version_problems(workload: Json | None, pods: list[Json]) -> list[Problem]:
    """Problems of one version: its workload's, then its pods' (sorted by pod name, deduplicated by reason)."""
    problems = workload_problems(workload)
    seen: dict[str, int] = {}
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        for problem in pod_problems(pod):
            seen[problem.reason] = seen.get(problem.reason, 0) + 1
            if seen[problem.reason] == 1:
                problems.append(problem)
    return problems
