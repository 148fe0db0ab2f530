"""Scale from zero: requests held until a pod is ready, bounded queue (429), timeout (503), demand marks."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import aiohttp
import pytest

from tessera_runtime.router.core import Router, RouterSettings
from tessera_runtime.router.hold import HoldSettings
from tessera_runtime.router.run import FRONT_ENDS, FrontEnd
from tessera_runtime.router.table import EndpointState, ModelKey
from tessera_runtime.router.testing import FakeUpstream, router_from_routes, serve_router

KEY = ("team", "llama")
ZERO = [{"name": "llama", "namespace": "team", "servedModelName": "llama-3", "versions": []}]


@pytest.fixture(params=FRONT_ENDS)
def front_end(request: pytest.FixtureRequest) -> FrontEnd:
    """Each scenario through both HTTP front ends: the lean server and aiohttp."""
    return cast(FrontEnd, request.param)


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    async with session.post(url + "/v1/completions", data=json.dumps(body).encode()) as response:
        return response.status, await response.json(), response.headers


async def _until(condition: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _router(marks: list[ModelKey], **hold: Any) -> Router:
    async def mark(key: ModelKey) -> None:
        marks.append(key)

    return router_from_routes(ZERO, RouterSettings(hold=HoldSettings(**hold)), mark_demand=mark)


def test_held_request_goes_through_once_a_pod_is_ready(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        pod = FakeUpstream("pod")
        await pod.start()
        marks: list[ModelKey] = []
        router = _router(marks, timeout=30, queue_limit=4, demand_interval=5)
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            held = [asyncio.create_task(_post(session, url, {"model": "llama-3", "prompt": "hi"})) for _ in range(3)]
            await _until(lambda: router.hold.held(KEY) == 3)
            assert marks == [KEY]  # demand marked once for three held requests
            metrics = await (await session.get(url + "/metrics")).text()
            assert 'tessera_router_held_requests{model="llama",namespace="team"} 3.0' in metrics
            assert not any(task.done() for task in held)
            # The operator scaled up: a ready endpoint appears.
            router.table.set_group(KEY, "slice-1", "v1", [EndpointState(pod.url)])
            results = await asyncio.wait_for(asyncio.gather(*held), 5)
            assert [status for status, _, _ in results] == [200, 200, 200]
            assert pod.requests == 3 and router.hold.held(KEY) == 0
            metrics = await (await session.get(url + "/metrics")).text()
            assert 'tessera_router_hold_seconds_count{model="llama",namespace="team"} 3.0' in metrics
            assert 'tessera_router_requests_total{code="200",model="llama",namespace="team"} 3.0' in metrics
        await pod.stop()

    asyncio.run(scenario())


def test_full_hold_queue_gets_429_and_timeout_gets_503_with_retry_after(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        marks: list[ModelKey] = []
        router = _router(marks, timeout=1.0, queue_limit=2, retry_after=7, demand_interval=5)
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            held = [asyncio.create_task(_post(session, url, {"model": "llama-3", "prompt": "hi"})) for _ in range(2)]
            await _until(lambda: router.hold.held(KEY) == 2)
            status, body, headers = await _post(session, url, {"model": "llama-3", "prompt": "hi"})
            assert status == 429 and headers["Retry-After"] == "7"
            assert body["error"]["code"] == "hold_queue_full" and "holds 2 requests" in body["error"]["message"]
            for status, body, headers in await asyncio.gather(*held):
                assert status == 503 and headers["Retry-After"] == "7"
                assert body["error"]["code"] == "model_not_ready"
                assert "no ready replica" in body["error"]["message"] and "scaling up" in body["error"]["message"]
            metrics = await (await session.get(url + "/metrics")).text()
            assert 'tessera_router_errors_total{cause="queue_full",model="llama",namespace="team"} 1.0' in metrics
            assert 'tessera_router_errors_total{cause="hold_timeout",model="llama",namespace="team"} 2.0' in metrics
            assert 'tessera_router_held_requests{model="llama",namespace="team"} 0.0' in metrics

    asyncio.run(scenario())


def test_demand_is_marked_at_most_once_per_interval_while_requests_are_held(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        marks: list[ModelKey] = []
        router = _router(marks, timeout=1.3, queue_limit=50, demand_interval=0.5)
        loop = asyncio.get_running_loop()
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            started = loop.time()
            held = [asyncio.create_task(_post(session, url, {"model": "llama-3", "prompt": "hi"})) for _ in range(20)]
            results = await asyncio.gather(*held)
            elapsed = loop.time() - started
            assert {status for status, _, _ in results} == {503}
        # 20 requests held for 1.3 s with a 0.5 s interval: a mark at once, then one per interval while
        # requests are held (about 0, 0.5 and 1.0 s), never one per request.
        assert 2 <= len(marks) <= 1 + elapsed / 0.5 and set(marks) == {KEY}

    asyncio.run(scenario())


def test_no_hold_when_disabled_and_deleted_models_end_their_holds(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        marks: list[ModelKey] = []
        router = _router(marks, timeout=0)
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            status, body, headers = await _post(session, url, {"model": "llama-3", "prompt": "hi"})
            assert status == 503 and "does not hold requests" in body["error"]["message"]
            assert "Retry-After" in headers and marks == [KEY]

        router = _router(marks, timeout=30)
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            task = asyncio.create_task(_post(session, url, {"model": "llama-3", "prompt": "hi"}))
            await _until(lambda: router.hold.held(KEY) == 1)
            router.table.remove_model(KEY)
            status, body, _ = await asyncio.wait_for(task, 5)
            assert status == 404 and body["error"]["code"] == "model_not_found"

    asyncio.run(scenario())
