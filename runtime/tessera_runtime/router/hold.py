"""Scale from zero: hold requests for a Model with no ready endpoint, and tell the operator once.

A request for a known Model whose weighted versions have no endpoint taking requests waits here,
in a bounded per-Model queue, until the routing table reports one (then it proceeds), the queue is
full (429) or the hold timeout passes (503); both errors carry `Retry-After` and say why.

The router never writes to the API per request: while requests are held, `DemandMarker` calls its
`mark` function at most once per Model per interval (the Kubernetes source patches the annotation
`tessera.dev/demand-at` on the Model); the held count is also a metric.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .errors import RouterError, unknown_model
from .metrics import RouterMetrics
from .table import ModelKey, ModelRoute, RoutingTable

log = logging.getLogger(__name__)

MarkDemand = Callable[[ModelKey], Awaitable[None]]


@dataclass(frozen=True)
class HoldSettings:
    """Limits of the hold queue."""

    timeout: float = 120.0
    """Seconds a request may wait for a ready endpoint (0: never hold, answer 503 at once)."""
    queue_limit: int = 256
    """Requests one Model may hold at once; the next gets 429 (0: never hold)."""
    retry_after: float = 5.0
    """Seconds suggested to clients in `Retry-After`."""
    demand_interval: float = 5.0
    """Least time between two demand marks of one Model."""


class DemandMarker:
    """Calls `mark` for a Model at most once per interval, in the background, never failing the request."""

    def __init__(self, mark: MarkDemand | None, interval: float = 5.0) -> None:
        self.mark = mark
        self.interval = interval
        self._last: dict[ModelKey, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def note(self, key: ModelKey) -> None:
        """Record demand for `key`; marks it unless it was marked within the interval."""
        if self.mark is None:
            return
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return
        self._last[key] = now
        task = asyncio.get_running_loop().create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: ModelKey) -> None:
        assert self.mark is not None
        try:
            await self.mark(key)
        except Exception as exc:  # demand marking is best effort: metrics still show held requests
            log.warning("could not mark demand on Model %s/%s: %s", key[0], key[1], exc)


class HoldQueue:
    """Per-Model counts of held requests and the waiting itself."""

    def __init__(self, table: RoutingTable, settings: HoldSettings, marker: DemandMarker,
                 metrics: RouterMetrics) -> None:
        self.table = table
        self.settings = settings
        self.marker = marker
        self.metrics = metrics
        self._held: dict[ModelKey, int] = {}

    def held(self, key: ModelKey) -> int:
        """Requests held now for the Model."""
        return self._held.get(key, 0)

    def _timeout_error(self, route: ModelRoute, waited: float) -> RouterError:
        name = route.spec.served_name
        if waited > 0:
            message = (f"The model `{name}` has no ready replica: the request waited {waited:.0f} s for one "
                       "(it is scaling up from zero or its replicas are not ready). Retry later.")
        else:
            message = (f"The model `{name}` has no ready replica (it is scaling up from zero or its replicas "
                       "are not ready), and this router does not hold requests. Retry later.")
        return RouterError(503, message, cause="hold_timeout", type_="service_unavailable",
                           code="model_not_ready", retry_after=self.settings.retry_after)

    async def wait(self, route: ModelRoute, ready: Callable[[ModelRoute], bool]) -> None:
        """Return once `ready(route)`; raise 429 (queue full), 503 (timeout) or 404 (Model deleted)."""
        key = route.spec.key
        settings = self.settings
        self.marker.note(key)
        if settings.timeout <= 0 or settings.queue_limit <= 0:
            raise self._timeout_error(route, 0.0)
        if self._held.get(key, 0) >= settings.queue_limit:
            raise RouterError(
                429,
                f"The model `{route.spec.served_name}` has no ready replica yet and already holds "
                f"{settings.queue_limit} requests, its limit. Retry later.",
                cause="queue_full", type_="rate_limit_error", code="hold_queue_full",
                retry_after=settings.retry_after,
            )
        loop = asyncio.get_running_loop()
        series = self.metrics.series(route.spec.name, route.spec.namespace)
        self._held[key] = self._held.get(key, 0) + 1
        series.held.inc()
        start = loop.time()
        deadline = start + settings.timeout
        try:
            while True:
                if self.table.models.get(key) is not route:
                    raise unknown_model(route.spec.served_name)
                if ready(route):
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._timeout_error(route, loop.time() - start)
                waiter: asyncio.Future[None] = loop.create_future()
                route.waiters.append(waiter)
                try:
                    await asyncio.wait_for(waiter, min(remaining, settings.demand_interval))
                except TimeoutError:
                    if waiter in route.waiters:
                        route.waiters.remove(waiter)
                self.marker.note(key)
        finally:
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]
            series.held.dec()
            series.hold_seconds.observe(loop.time() - start)
