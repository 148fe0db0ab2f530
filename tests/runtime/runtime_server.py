"""Helpers for the runtime tests: start `tessera-runtime serve` as a child process and talk to it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MODEL_NAME = "smollm2"
# The session server is small on purpose: 4 rows and 2 waiting requests make the queue-full case cheap.
SESSION_BATCH = 4
SESSION_QUEUE = 2


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A `tessera-runtime serve` child process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, body
        return body

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, body = self.get("/ready", timeout=2.0)
                if status == 200 and json.loads(body)["ready"]:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_server(tmp_dir: Path, *extra: str, model: Path | None = None) -> ServerProcess:
    """Start a server on a free port (not waiting for readiness)."""
    from tessera_runtime.engines import smollm2_path

    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    command = [
        sys.executable, "-c", "from tessera_runtime.cli import main; main()",
        "serve", "--model", str(model or smollm2_path()), "--served-model-name", MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--threads", "1",
        *extra,
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    return ServerProcess(process, port, log_path)
