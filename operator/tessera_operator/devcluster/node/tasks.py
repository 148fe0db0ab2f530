"""Fire-and-forget asyncio tasks that are kept referenced until they finish (so none is collected)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

_running: set[asyncio.Task[Any]] = set()
log = logging.getLogger("tessera.local-node")


def spawn(coroutine: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
    """Start a background task; its exception, if any, is logged rather than lost."""
    task = asyncio.create_task(coroutine, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())
