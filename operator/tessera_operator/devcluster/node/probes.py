"""Container probes (HTTP, TCP, exec; gRPC is checked as TCP) and their threshold bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

Json = dict[str, Any]


@dataclass(frozen=True)
class ProbeTarget:
    """Where and how a container's probes run."""

    pod_ip: str
    ports: Mapping[str, int]
    env: Mapping[str, str]
    cwd: str
    argv: Callable[[list[str]], list[str]]  # container command -> host argv (rewrite + resolve)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""


def _port(value: int | str, target: ProbeTarget) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    if value not in target.ports:
        raise ValueError(f"named port {value!r} is not declared by the container")
    return target.ports[value]


async def run_probe(probe: Json, target: ProbeTarget) -> ProbeResult:
    """Run one probe attempt within its timeoutSeconds."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            return await _http(probe["httpGet"], target, timeout)
        if "tcpSocket" in probe:
            return await _tcp(
                probe["tcpSocket"].get("host") or target.pod_ip,
                _port(probe["tcpSocket"]["port"], target),
                timeout,
            )
        if "grpc" in probe:
            return await _tcp(target.pod_ip, int(probe["grpc"]["port"]), timeout)
        if "exec" in probe:
            return await run_exec(probe["exec"]["command"], target, timeout)
    except (ValueError, OSError) as error:
        return ProbeResult(False, str(error))
    return ProbeResult(False, "probe has no handler")


async def _http(spec: Json, target: ProbeTarget, timeout: float) -> ProbeResult:
    scheme = str(spec.get("scheme", "HTTP")).lower()
    host = spec.get("host") or target.pod_ip
    path = spec.get("path", "/")
    url = f"{scheme}://{host}:{_port(spec['port'], target)}{path if path.startswith('/') else '/' + path}"
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders", []) or []}
    headers.setdefault("User-Agent", "kube-probe/tessera-local-node")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, headers=headers, ssl=False, allow_redirects=False) as response,
        ):
            ok = 200 <= response.status < 400
            return ProbeResult(ok, f"HTTP probe failed with statuscode: {response.status}" if not ok else "")
    except (aiohttp.ClientError, TimeoutError) as error:
        return ProbeResult(False, f'Get "{url}": {type(error).__name__}: {error}')


async def _tcp(host: str, port: int, timeout: float) -> ProbeResult:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as error:
        return ProbeResult(False, f"dial tcp {host}:{port}: {error}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True)


async def run_exec(command: list[str], target: ProbeTarget, timeout: float) -> ProbeResult:
    """Run a command with the container's environment; success is exit code 0."""
    try:
        process = await asyncio.create_subprocess_exec(
            *target.argv(command),
            cwd=target.cwd,
            env=dict(target.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        return ProbeResult(False, f"exec failed: {error}")
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return ProbeResult(False, f"command timed out after {timeout:g}s")
    text = output.decode(errors="replace")[-300:]
    return ProbeResult(process.returncode == 0, text if process.returncode else "")


class ProbeTracker:
    """Consecutive successes/failures against successThreshold/failureThreshold."""

    def __init__(self, probe: Json) -> None:
        self.probe = probe
        self.period = float(probe.get("periodSeconds", 10))
        self.initial_delay = float(probe.get("initialDelaySeconds", 0))
        self.success_threshold = int(probe.get("successThreshold", 1))
        self.failure_threshold = int(probe.get("failureThreshold", 3))
        self._successes = 0
        self._failures = 0

    def record(self, result: ProbeResult) -> bool | None:
        """Feed one attempt; returns True/False when a threshold is crossed, else None."""
        if result.ok:
            self._successes, self._failures = self._successes + 1, 0
            return True if self._successes >= self.success_threshold else None
        self._successes, self._failures = 0, self._failures + 1
        return False if self._failures >= self.failure_threshold else None
