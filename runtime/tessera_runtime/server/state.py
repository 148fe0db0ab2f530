"""The server's shared state: the engine, the model's facts, readiness and in-flight accounting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..engines.transformers_engine import TransformersEngine
from ..metrics import EngineMetrics
from ..request_limits import RequestLimits

SERVER_LIMITS = RequestLimits(max_body_bytes=16 * 1024 * 1024)


@dataclass
class ServerState:
    """Everything a handler needs. `ready` is true only once the model is loaded and warmed up."""

    model_name: str
    metrics: EngineMetrics
    created: int
    loaded_engine: TransformersEngine | None = None
    tokenizer: Any = None
    max_model_len: int = 0
    ready: bool = False
    draining: bool = False
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    limits: RequestLimits = SERVER_LIMITS
    """Body size and the time clients get to send request heads and bodies."""

    @property
    def engine(self) -> TransformersEngine:
        """The engine; only handlers that run once the model is loaded may ask for it."""
        if self.loaded_engine is None:
            raise RuntimeError("the model is not loaded yet")
        return self.loaded_engine

    def enter(self) -> None:
        """A request starts."""
        self.inflight += 1
        self.idle.clear()

    def leave(self) -> None:
        """A request (or stream) ended."""
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()


STATE_KEY: web.AppKey[ServerState] = web.AppKey("tessera_state", ServerState)
