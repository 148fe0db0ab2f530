"""Run the model server: listen first (liveness), load and warm up (then ready), drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..engines.loader import load_model
from ..engines.transformers_engine import TransformersEngine
from ..engines.types import SamplingParams
from ..metrics import EngineMetrics
from ..request_limits import RequestLimits
from .app import create_app
from .state import SERVER_LIMITS, ServerState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """Options of `tessera-runtime serve`."""

    model: Path
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 8
    max_queue: int = 64
    max_model_len: int | None = None
    drain_timeout: float = 30.0
    threads: int = os.cpu_count() or 1
    gguf_cache: Path | None = None  # where converted GGUF models are kept (None: convert at every start)
    limits: RequestLimits = SERVER_LIMITS  # body size, request head and body timeouts (bad or slow clients)

    @property
    def model_name(self) -> str:
        """The name clients use: the given one, or the model file's or directory's name."""
        if self.served_model_name:
            return self.served_model_name
        return self.model.stem if self.model.is_file() else self.model.name


async def _warm_up(engine: TransformersEngine) -> None:
    """One short generation through the real path, so the first client does not pay for lazy init."""
    prompt = [int(t) for t in engine.tokenizer.encode("Hello")] or [0]
    stream = engine.submit(prompt, SamplingParams(max_tokens=2, temperature=0.0))
    async for _ in stream:
        pass


async def serve(options: ServeOptions, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives, then drain and return."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or no signals
            loop.add_signal_handler(signum, stop.set)
    metrics = EngineMetrics(options.model_name, options.max_model_len or 8192)
    state = ServerState(model_name=options.model_name, metrics=metrics, created=int(time.time()),
                        limits=options.limits)
    runner = web.AppRunner(create_app(state), handler_cancellation=True, access_log=None,
                           **options.limits.runner_options())
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port)
    await site.start()
    log.info("listening on http://%s:%d (loading %s)", options.host, options.port, options.model)
    engine: TransformersEngine | None = None
    try:
        started = time.monotonic()
        loaded = await asyncio.to_thread(
            load_model,
            options.model,
            threads=options.threads,
            max_model_len=options.max_model_len,
            gguf_cache=options.gguf_cache,
        )
        engine = TransformersEngine(
            loaded, max_batch_size=options.max_batch_size, max_queue=options.max_queue, metrics=metrics
        )
        engine.start(loop)
        await _warm_up(engine)
        metrics.model_load_seconds.set(time.monotonic() - started)
        state.loaded_engine, state.tokenizer, state.max_model_len = (
            engine,
            loaded.tokenizer,
            loaded.max_model_len,
        )
        state.ready = True
        log.info(
            "ready: serving %s as %r (%.1fs to load and warm up)",
            options.model,
            options.model_name,
            time.monotonic() - started,
        )
        await stop.wait()
        log.info("shutting down: refusing new requests, draining %d in flight", state.inflight)
        await _drain(state, engine, options.drain_timeout)
    finally:
        state.ready = False
        if engine is not None:
            engine.shutdown()
        await runner.cleanup()
        log.info("stopped")


async def _drain(state: ServerState, engine: TransformersEngine, timeout: float) -> None:
    """Readiness off, new requests refused, in-flight ones finish (up to `timeout`), the rest aborted."""
    state.draining = True
    engine.close()
    if state.inflight:
        try:
            await asyncio.wait_for(state.idle.wait(), timeout)
        except TimeoutError:
            log.warning("drain timeout (%.0fs): aborting %d requests", timeout, state.inflight)
            engine.shutdown()
            # Aborted streams end with finish_reason "abort"; give their handlers a moment to write it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.idle.wait(), 5.0)
