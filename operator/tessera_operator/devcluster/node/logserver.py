"""A kubelet-style log endpoint, so `kubectl logs` works for local pods through the apiserver.

The apiserver calls https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/
NS/POD/CONTAINER with its kubelet-client certificate; only clients with a certificate from the
cluster CA are accepted.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from tessera_operator.devcluster.node.agent import NodeAgent


def log_files(folder: Path) -> list[Path]:
    """A container's log files, oldest run first."""
    return sorted(folder.glob("*.log"), key=lambda p: int(p.stem)) if folder.is_dir() else []


def tail_bytes(data: bytes, lines: int | None) -> bytes:
    """The last `lines` lines of data (all when None)."""
    if lines is None:
        return data
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


async def serve_logs(agent: NodeAgent, host: str, port: int) -> web.AppRunner:
    """Start the HTTPS log server; returns its runner (call cleanup() to stop)."""
    pki = agent.layout.pki
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "local-node-serving.crt"), str(pki / "local-node-serving.key"))
    context.verify_mode = ssl.CERT_REQUIRED

    async def container_logs(request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        worker = next((w for w in agent.workers.values() if w.namespace == namespace and w.name == pod), None)
        if worker is None:
            raise web.HTTPNotFound(text=f"pod {namespace}/{pod} is not running on {agent.node_name}\n")
        files = log_files(worker.log_dir(container))
        previous = request.query.get("previous") == "true"
        if not files or (previous and len(files) < 2):
            raise web.HTTPNotFound(
                text=f"no {'previous ' if previous else ''}logs for container {container}\n"
            )
        path = files[-2] if previous else files[-1]
        tail = int(request.query["tailLines"]) if "tailLines" in request.query else None
        limit = int(request.query["limitBytes"]) if "limitBytes" in request.query else None
        data = tail_bytes(path.read_bytes(), tail)
        if limit is not None:
            data = data[:limit]
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        if request.query.get("follow") == "true" and not previous:
            runner = next((r for r in worker.runners + worker.init_runners if r.name == container), None)
            offset = path.stat().st_size
            while runner is not None and "running" in runner.state and not request.transport.is_closing():  # type: ignore[union-attr]
                await asyncio.sleep(0.3)
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                if chunk:
                    offset += len(chunk)
                    await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    return runner
