"""One container of a local pod: a process group with its log, probes, restarts and back-off."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
from pathlib import Path
from typing import Any, Literal, Protocol

from tessera_operator.devcluster import processes
from tessera_operator.devcluster.node.launch import ImageNotMappedError, Launch
from tessera_operator.devcluster.node.podenv import ConfigError
from tessera_operator.devcluster.node.probes import ProbeTarget, ProbeTracker, run_exec, run_probe
from tessera_operator.devcluster.processes import ProcessRecord
from tessera_operator.devcluster.profile import RestartBackoff

Json = dict[str, Any]
Kind = Literal["init", "sidecar", "main"]
log = logging.getLogger("tessera.local-node")
KEEP_LOGS = 2  # the current and the previous run (`logs --previous`)
UNHEALTHY_EVENT_INTERVAL = 10.0  # seconds between two Unhealthy events of one container


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodRuntime(Protocol):
    """What a container needs from its pod."""

    pod_ip: str
    backoff: RestartBackoff
    termination_grace: float

    def launch(self, container: Json) -> Launch: ...
    def log_dir(self, container_name: str) -> Path: ...
    def notify(self) -> None: ...
    def event(self, kind: str, reason: str, message: str) -> None: ...
    def track(self, key: str, record: ProcessRecord | None) -> None: ...
    async def refresh_references(self) -> None: ...


class ContainerRunner:
    """Runs one container until it is done (per its restart policy) or stopped."""

    def __init__(self, spec: Json, runtime: PodRuntime, kind: Kind, restart_policy: str) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.runtime = runtime
        self.kind = kind
        self.restart_policy = "Always" if kind == "sidecar" else restart_policy
        self.restart_count = 0
        self.state: Json = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Json = {}
        self.ready = False
        self.started = False
        self.pid: int | None = None
        self.became_started = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._stop = asyncio.Event()
        self._crashes = 0
        self._last_unhealthy = -UNHEALTHY_EVENT_INTERVAL

    def adopt(self, previous: Json) -> None:
        """Continue from the status an earlier agent reported: its process is gone, count a restart."""
        if not previous.get("containerID"):
            return
        self.restart_count = int(previous.get("restartCount", 0)) + 1
        old = previous.get("state", {})
        started = (old.get("running") or old.get("terminated") or {}).get("startedAt", now_rfc3339())
        message = "the local node agent restarted; the container's process was stopped with it"
        self.last_state = {
            "terminated": {
                "exitCode": 137,
                "reason": "Error",
                "message": message,
                "startedAt": started,
                "finishedAt": now_rfc3339(),
            }
        }

    # ------------------------------------------------------------------ status
    def status(self) -> Json:
        """This container's entry in containerStatuses / initContainerStatuses."""
        entry: Json = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.pid is not None:
            entry["containerID"] = f"tessera-local://{self.pid}"
        return entry

    @property
    def succeeded(self) -> bool:
        return bool(self.state.get("terminated", {}).get("exitCode") == 0)

    def _set(self, state: Json, *, ready: bool | None = None) -> None:
        self.state = state
        if ready is not None:
            self.ready = ready
        self.runtime.notify()

    # ------------------------------------------------------------------ life
    async def run(self) -> None:
        """Start, wait, restart with back-off per restartPolicy, until done or stopped."""
        while not self._stop.is_set():
            try:
                launch = self.runtime.launch(self.spec)
            except ImageNotMappedError as error:
                self._set({"waiting": {"reason": "ImageNotMapped", "message": str(error)}})
                self.runtime.event("Warning", "ImageNotMapped", str(error))
                await self._stop.wait()  # the profile will not change under a running pod
                return
            except ConfigError as error:
                self._set({"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}})
                if await self._sleep(2.0):
                    return
                await self.runtime.refresh_references()
                continue
            exit_code, ran_for = await self._run_once(launch)
            if self._stop.is_set() or not self._should_restart(exit_code):
                return
            self._crashes = 1 if ran_for > 2 * self.runtime.backoff.max_seconds else self._crashes + 1
            delay = min(
                self.runtime.backoff.max_seconds,
                self.runtime.backoff.initial_seconds * 2 ** (self._crashes - 1),
            )
            message = f"back-off {delay:g}s restarting failed container={self.name}"
            self.last_state, self.pid = self.state, None
            self._set({"waiting": {"reason": "CrashLoopBackOff", "message": message}}, ready=False)
            self.runtime.event("Warning", "BackOff", message)
            if await self._sleep(delay):
                return
            self.restart_count += 1

    def _should_restart(self, exit_code: int) -> bool:
        if self.restart_policy == "Always":
            return True
        return self.restart_policy == "OnFailure" and exit_code != 0

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped first; returns whether we were stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def _run_once(self, launch: Launch) -> tuple[int, float]:
        log_path = self._log_file()
        started_at = now_rfc3339()
        loop = asyncio.get_running_loop()
        begin = loop.time()
        try:
            with log_path.open("ab") as log_file:
                process = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    cwd=launch.cwd,
                    env=launch.env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=processes.set_parent_death_signal,
                )
        except OSError as error:
            message = f"failed to start {launch.argv[0]!r}: {error}"
            self._set(
                {
                    "terminated": {
                        "exitCode": 128,
                        "reason": "StartError",
                        "message": message,
                        "startedAt": started_at,
                        "finishedAt": now_rfc3339(),
                    }
                },
                ready=False,
            )
            self.runtime.event("Warning", "Failed", message)
            return 128, 0.0
        self._process, self.pid = process, process.pid
        key = f"{self.name}"
        ticks = processes.start_ticks(process.pid)
        self.runtime.track(key, ProcessRecord(self.name, process.pid, ticks or -1, str(log_path)))
        self.started = not self.spec.get("startupProbe")
        self._set(
            {"running": {"startedAt": started_at}}, ready=self.started and not self.spec.get("readinessProbe")
        )
        if self.started:
            self.became_started.set()
        self.runtime.event("Normal", "Started", f"Started container {self.name} (pid {process.pid})")
        probes = asyncio.create_task(self._probe(launch))
        code = await process.wait()
        probes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probes
        _kill_group(process.pid, signal.SIGKILL)  # the main process is gone: so goes its group
        self.runtime.track(key, None)
        exit_code = 128 - code if code < 0 else code
        reason = "Completed" if exit_code == 0 else "Error"
        self.started = False
        self._set(
            {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": started_at,
                    "finishedAt": now_rfc3339(),
                    "containerID": f"tessera-local://{process.pid}",
                }
            },
            ready=False,
        )
        self._process = None
        return exit_code, loop.time() - begin

    def _log_file(self) -> Path:
        folder = self.runtime.log_dir(self.name)
        folder.mkdir(parents=True, exist_ok=True)
        for old in sorted(folder.glob("*.log"), key=lambda p: int(p.stem))[: -(KEEP_LOGS - 1) or None]:
            old.unlink()
        return folder / f"{self.restart_count}.log"

    # ------------------------------------------------------------------ probes
    async def _probe(self, launch: Launch) -> None:
        target = ProbeTarget(self.runtime.pod_ip, launch.ports, launch.env, str(launch.cwd), launch.host_argv)
        startup = self.spec.get("startupProbe")
        if startup:
            if not await self._until_threshold("Startup", ProbeTracker(startup), target):
                await self._kill_unhealthy("startup probe failed")
                return
            self.started = True
            self.became_started.set()
            self.runtime.notify()
        loops = []
        if self.spec.get("readinessProbe"):
            loops.append(self._readiness(ProbeTracker(self.spec["readinessProbe"]), target))
        else:
            self.ready = True
            self.runtime.notify()
        if self.spec.get("livenessProbe"):
            loops.append(self._liveness(ProbeTracker(self.spec["livenessProbe"]), target))
        await asyncio.gather(*loops)

    async def _until_threshold(self, kind: str, tracker: ProbeTracker, target: ProbeTarget) -> bool:
        await asyncio.sleep(tracker.initial_delay)
        while True:
            result = await run_probe(tracker.probe, target)
            verdict = tracker.record(result)
            if not result.ok:
                self._unhealthy(kind, result.message)
            if verdict is not None:
                return verdict
            await asyncio.sleep(tracker.period)

    async def _readiness(self, tracker: ProbeTracker, target: ProbeTarget) -> None:
        await asyncio.sleep(tracker.initial_delay)
        while True:
            result = await run_probe(tracker.probe, target)
            verdict = tracker.record(result)
            if not result.ok:
                self._unhealthy("Readiness", result.message)
            if verdict is not None and verdict != self.ready:
                self.ready = verdict
                self.runtime.notify()
            await asyncio.sleep(tracker.period)

    async def _liveness(self, tracker: ProbeTracker, target: ProbeTarget) -> None:
        if await self._until_threshold("Liveness", tracker, target) is False:
            await self._kill_unhealthy("liveness probe failed")
            return
        while True:
            await asyncio.sleep(tracker.period)
            result = await run_probe(tracker.probe, target)
            if not result.ok:
                self._unhealthy("Liveness", result.message)
            if tracker.record(result) is False:
                await self._kill_unhealthy("liveness probe failed")
                return

    def _unhealthy(self, kind: str, message: str) -> None:
        """Report a failed probe as a Warning event, at most every UNHEALTHY_EVENT_INTERVAL."""
        now = asyncio.get_running_loop().time()
        if now - self._last_unhealthy >= UNHEALTHY_EVENT_INTERVAL:
            self._last_unhealthy = now
            self.runtime.event("Warning", "Unhealthy", f"{kind} probe failed: {message}".strip())

    async def _kill_unhealthy(self, why: str) -> None:
        self.runtime.event("Normal", "Killing", f"Container {self.name} {why}, will be restarted")
        await self._terminate_process(asyncio.get_running_loop().time() + self.runtime.termination_grace)

    # ------------------------------------------------------------------ stop
    async def stop(self, deadline: float) -> None:
        """Run the preStop hook, SIGTERM the process group, SIGKILL it at `deadline` (loop time)."""
        self._stop.set()
        if self._process is None or self._process.returncode is not None:
            return
        self.runtime.event("Normal", "Killing", f"Stopping container {self.name}")
        await self._pre_stop(deadline)
        await self._terminate_process(deadline)

    async def _pre_stop(self, deadline: float) -> None:
        hook = (self.spec.get("lifecycle") or {}).get("preStop") or {}
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or not hook:
            return
        with contextlib.suppress(TimeoutError, ConfigError, ImageNotMappedError):
            if "sleep" in hook:
                await asyncio.wait_for(asyncio.sleep(float(hook["sleep"]["seconds"])), remaining)
            elif "exec" in hook:
                launch = self.runtime.launch(self.spec)
                target = ProbeTarget(
                    self.runtime.pod_ip, launch.ports, launch.env, str(launch.cwd), launch.host_argv
                )
                await run_exec(hook["exec"]["command"], target, remaining)
            elif "httpGet" in hook:
                launch = self.runtime.launch(self.spec)
                target = ProbeTarget(
                    self.runtime.pod_ip, launch.ports, launch.env, str(launch.cwd), launch.host_argv
                )
                await run_probe({"httpGet": hook["httpGet"], "timeoutSeconds": remaining}, target)

    async def _terminate_process(self, deadline: float) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        _kill_group(process.pid, signal.SIGTERM)
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), remaining)
        except TimeoutError:
            log.info("container %s did not stop within its grace period: SIGKILL", self.name)
            _kill_group(process.pid, signal.SIGKILL)
            await process.wait()


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
