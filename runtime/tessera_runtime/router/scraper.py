"""Periodic scrape of each endpoint's /metrics: queue length and KV-cache usage feed endpoint choice.

Only two of vLLM's series matter here, `vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc`
(summed over label sets: one pod serves one model, but a pod with several engines reports each).
A pod that does not answer keeps its last figures; the scrape is advice, never a gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from .table import Endpoint, RoutingTable

log = logging.getLogger(__name__)

WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"


def parse_load(text: str) -> tuple[float | None, float | None]:
    """(waiting requests, KV-cache usage 0..1) from a Prometheus text exposition; None when absent."""
    waiting: float | None = None
    kv_cache: float | None = None
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name_end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=-1)
        if name_end < 0:
            continue
        name = line[:name_end]
        if name not in (WAITING, KV_CACHE):
            continue
        # The value follows the labels' closing brace (or the name) and precedes an optional timestamp.
        rest = line[line.rfind("}") + 1:] if "{" in line[:name_end + 1] else line[name_end:]
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if name == WAITING:
            waiting = (waiting or 0.0) + value
        else:
            kv_cache = max(kv_cache or 0.0, value)
    return waiting, kv_cache


class LoadScraper:
    """Scrapes every endpoint of the table every `interval` seconds."""

    def __init__(self, table: RoutingTable, session: aiohttp.ClientSession, interval: float = 2.0,
                 timeout: float = 1.0) -> None:
        self.table = table
        self.session = session
        self.interval = interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._task: asyncio.Task[None] | None = None

    async def scrape(self, endpoint: Endpoint) -> None:
        """Update one endpoint's waiting count and KV-cache usage."""
        try:
            async with self.session.get(endpoint.url + "/metrics", timeout=self.timeout) as response:
                if response.status != 200:
                    return
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("scrape of %s failed: %s", endpoint.url, exc)
            return
        waiting, kv_cache = parse_load(text)
        if waiting is not None:
            endpoint.waiting = waiting
        if kv_cache is not None:
            endpoint.kv_cache_usage = kv_cache

    async def scrape_all(self) -> None:
        """One round over every endpoint that still gets or finishes traffic."""
        endpoints = [e for e in self.table.all_endpoints() if e.ready or e.serving]
        if endpoints:
            await asyncio.gather(*(self.scrape(e) for e in endpoints))

    async def _run(self) -> None:
        while True:
            await self.scrape_all()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start scraping in the background (no-op when the interval is 0)."""
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop scraping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
