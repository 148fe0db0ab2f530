"""What every task kind needs besides its items and the two endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from tessera_operator.api.v1alpha1 import ServiceLevelObjective

T = TypeVar("T")


def _ignore(_: int) -> None:
    return None


@dataclass(frozen=True)
class TaskContext:
    """Settings shared by the tasks of one evaluation."""

    alpha: float = 0.05
    """One-sided error rate of each test (1 - the suite's confidence)."""
    resamples: int = 2000
    """Bootstrap resamples."""
    slo: ServiceLevelObjective | None = None
    """The Model's latency objectives, the default threshold of latency tasks."""
    advance: Callable[[int], None] = field(default=_ignore)
    """Progress: called with the number of requests just completed."""
    set_total: Callable[[int], None] = field(default=_ignore)
    """Progress: called once with the number of requests the task will send."""


async def gather_counted(context: TaskContext, calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run awaitables concurrently (the clients bound the concurrency), reporting progress, in order."""
    pending = list(calls)
    context.set_total(len(pending))

    async def counted(call: Awaitable[T]) -> T:
        result = await call
        context.advance(1)
        return result

    tasks = [asyncio.ensure_future(counted(call)) for call in pending]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        # One failure ends the task: do not leave the other requests running behind it.
        for task in tasks:
            task.cancel()
