"""Child processes of a local cluster: start with a log file, recognise after a restart, stop cleanly.

Each component runs in its own session (so its process group can be signalled as a whole) and is
recorded by pid *and* kernel start time, so a recycled pid is never mistaken for our process.
Processes started for a test session can be tied to the parent's life (PR_SET_PDEATHSIG), so a
killed pytest leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRecord:
    """A started process: enough to find it again from another command."""

    name: str
    pid: int
    start_ticks: int
    log: str

    def to_json(self) -> dict[str, object]:
        """JSON form (camelCase) for the cluster state file."""
        return {"name": self.name, "pid": self.pid, "startTicks": self.start_ticks, "log": self.log}

    @staticmethod
    def from_json(data: Mapping[str, object]) -> ProcessRecord:
        """Inverse of to_json."""
        return ProcessRecord(
            str(data["name"]), int(str(data["pid"])), int(str(data["startTicks"])), str(data["log"])
        )


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie is as good as gone
        return None
    return int(fields[19])


def set_parent_death_signal() -> None:
    """In a child before exec: ask the kernel to SIGKILL it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> ProcessRecord:
    """Start a process in a new session with stdout+stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    preexec: Callable[[], None] | None = set_parent_death_signal if die_with_parent else None
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=preexec,
        )
    _children[process.pid] = process
    ticks = start_ticks(process.pid)
    return ProcessRecord(name, process.pid, ticks if ticks is not None else -1, str(log_path))


def is_alive(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs (same pid and same start time)."""
    child = _children.get(record.pid)
    if child is not None and child.poll() is not None:
        return False
    return start_ticks(record.pid) == record.start_ticks


def exit_code(record: ProcessRecord) -> int | None:
    """The exit code of a process this Python process started, once it has exited."""
    child = _children.get(record.pid)
    return child.poll() if child is not None else None


def stop(record: ProcessRecord, grace_seconds: float = 10.0) -> None:
    """SIGTERM the process group, wait up to the grace period, then SIGKILL it; reap our children."""
    if is_alive(record):
        _signal_group(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and is_alive(record):
            time.sleep(0.05)
    # The leader may be gone while members of its group linger: always sweep the group.
    _signal_group(record.pid, signal.SIGKILL)
    child = _children.pop(record.pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
