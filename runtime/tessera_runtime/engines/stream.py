"""The asyncio side of one request: events arrive from the engine thread; the handler reads them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from .types import Event, FinishEvent


class RequestStream:
    """Events of one request (all of its n sequences), readable from the event loop.

    The engine thread hands over events with `deliver` (through `call_soon_threadsafe`); iteration
    ends once every sequence has finished. `cancel` tells the engine to free the request's batch
    slots at its next step.
    """

    def __init__(self, request_id: int, n: int, canceller: Callable[[int], None]) -> None:
        self.request_id = request_id
        self._n = n
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._canceller = canceller
        self._finished = 0
        self._cancelled = False

    def deliver(self, events: Sequence[Event]) -> None:
        """Called on the event loop with the events of one engine step."""
        for event in events:
            self._queue.put_nowait(event)

    @property
    def done(self) -> bool:
        """True once every sequence of the request has finished."""
        return self._finished >= self._n

    async def __aiter__(self) -> AsyncIterator[Event]:
        while not self.done:
            event = await self._queue.get()
            if isinstance(event, FinishEvent):
                self._finished += 1
            yield event

    def cancel(self) -> None:
        """Abort the request (idempotent); its slots are freed before the engine's next step."""
        if not self._cancelled and not self.done:
            self._cancelled = True
            self._canceller(self.request_id)
