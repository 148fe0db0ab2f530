"""Start a router process: sources, scraper, HTTP server; drain in-flight requests on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web

from .app import build_runner
from .core import Router, RouterSettings
from .file_source import FileSource
from .scraper import LoadScraper
from .server import LeanServer

log = logging.getLogger(__name__)

FrontEnd = Literal["lean", "aiohttp"]
FRONT_ENDS: tuple[FrontEnd, ...] = ("lean", "aiohttp")


@dataclass
class RunningFrontEnd:
    """A listening front end: its port, and how to stop it (draining in-flight requests)."""

    port: int
    stop: Callable[[], Awaitable[None]]


async def start_front_end(router: Router, kind: FrontEnd, host: str, port: int, shutdown_timeout: float,
                          backlog: int = 1024) -> RunningFrontEnd:
    """Start `router` (its scraper session) and serve it with the lean server or aiohttp."""
    if kind == "lean":
        await router.start()
        server = LeanServer(router)
        try:
            await server.start(host, port, backlog)
        except BaseException:
            await router.close()
            raise

        async def stop_lean() -> None:
            try:
                await server.shutdown(shutdown_timeout)
            finally:
                await router.close()

        return RunningFrontEnd(server.port, stop_lean)
    runner = build_runner(router, shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return RunningFrontEnd(int(runner.addresses[0][1]), runner.cleanup)


@dataclass
class RouterOptions:
    """Command-line options of `tessera-runtime router`."""

    host: str = "0.0.0.0"
    port: int = 8080
    routes: Path | None = None
    kubeconfig: Path | None = None
    in_cluster: bool = False
    namespace: str | None = None
    endpoints_from: Literal["endpointslices", "pods"] = "endpointslices"
    api_key_namespace: str | None = None
    settings: RouterSettings = field(default_factory=RouterSettings)
    scrape_interval: float = 2.0
    reload_interval: float = 1.0
    shutdown_timeout: float = 60.0
    server: FrontEnd = "lean"
    """The HTTP front end: the lean asyncio.Protocol server, or aiohttp.web."""


def _tune_gc() -> None:
    """Fewer collector passes on the request path.

    Every proxied request allocates a few hundred short-lived objects, which at Python's default
    threshold (700) runs a young-generation collection every other request. What is alive after
    start-up (modules, the app, the table) is frozen out of the collector's scans for good.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def serve(options: RouterOptions, started: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT; then stop accepting and give in-flight streams `shutdown_timeout` s."""
    kube = None
    file_source = None
    router = Router(options.settings)
    if options.routes is not None:
        file_source = FileSource(options.routes, router.table, router.keys, options.reload_interval)
        router.synced.append(file_source.synced)
    else:
        from .kube_source import KubeSource, api_client  # the kubernetes client only when used

        kube = KubeSource(router.table, router.keys, api_client(options.kubeconfig, options.in_cluster),
                          options.namespace, options.endpoints_from, options.api_key_namespace)
        router.marker.mark = kube.mark_demand
        router.synced.append(kube.synced)

    front_end = await start_front_end(router, options.server, options.host, options.port, options.shutdown_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if file_source is not None:
        file_source.start()
    if kube is not None:
        kube.start()
    assert router.session is not None
    scraper = LoadScraper(router.table, router.session, options.scrape_interval)
    scraper.start()
    _tune_gc()
    log.info("router listening on %s:%d (%s front end)", options.host, front_end.port, options.server)
    if started is not None:
        started.set()
    try:
        await stop.wait()
    finally:
        log.info("router stopping: draining in-flight requests (up to %.0f s)", options.shutdown_timeout)
        await scraper.stop()
        if file_source is not None:
            await file_source.stop()
        if kube is not None:
            kube.stop()
        await front_end.stop()
