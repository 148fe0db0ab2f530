"""Bad input to the router (issue 14): malformed, oversized and slow (slowloris-style) requests each get
an OpenAI-format error or a timeout, never reach a pod, and the router keeps serving other clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import aiohttp
import pytest

from tessera_runtime.request_limits import RequestLimits
from tessera_runtime.router.core import RouterSettings
from tessera_runtime.router.run import FRONT_ENDS, FrontEnd
from tessera_runtime.router.testing import (
    FakeUpstream,
    assert_openai_error,
    post_head,
    raw_request,
    router_from_routes,
    serve_router,
)

LIMITS = RequestLimits(max_body_bytes=4096, header_timeout=1.0, body_timeout=1.0)
PATH = "/v1/completions"
GOOD = json.dumps({"model": "llama", "prompt": "hi"}).encode()


@pytest.fixture(params=FRONT_ENDS)
def front_end(request: pytest.FixtureRequest) -> FrontEnd:
    """Each scenario through both HTTP front ends: the lean server and aiohttp."""
    return cast(FrontEnd, request.param)


@asynccontextmanager
async def router_and_pod(front_end: FrontEnd) -> AsyncIterator[tuple[str, FakeUpstream, Any]]:
    pod = FakeUpstream("pod")
    await pod.start()
    router = router_from_routes([{"name": "llama", "versions": [{"version": "v1", "endpoints": [pod.url]}]}],
                                RouterSettings(limits=LIMITS))
    try:
        async with serve_router(router, server=front_end) as url:
            yield url, pod, router
    finally:
        await pod.stop()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_malformed_bodies_get_openai_errors_and_never_reach_a_pod(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        async with router_and_pod(front_end) as (url, pod, _):
            bodies = [b'{"model": "llama", "prompt": ', b"[1, 2, 3]", b'"llama"', b"\xff\xfe\x00garbage",
                      b'{"prompt": "no model"}', b'{"model": 42}', b"null"]
            for body in bodies:
                answer = await raw_request(url, [post_head(PATH, len(body)) + body])
                error = assert_openai_error(answer, 400)
                assert error["type"] == "invalid_request_error"
            unknown = json.dumps({"model": "nope", "prompt": "x"}).encode()
            answer = await raw_request(url, [post_head(PATH, len(unknown)) + unknown])
            assert assert_openai_error(answer, 404, "model_not_found")["param"] == "model"
            assert pod.requests == 0
            ok = await raw_request(url, [post_head(PATH, len(GOOD)) + GOOD])
            assert ok.status == 200 and pod.requests == 1

    run(scenario)


def test_oversized_bodies_get_413_whether_declared_or_chunked(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        async with router_and_pod(front_end) as (url, pod, router):
            # Declared too large: refused from the head alone, before the body is sent.
            declared = await raw_request(url, [post_head(PATH, 10 * 1024 * 1024)])
            assert "4096" in assert_openai_error(declared, 413, "request_too_large")["message"]
            assert declared.closed
            # Chunked, no length: refused once the bytes received pass the limit.
            payload = b'{"model": "llama", "prompt": "' + b"x" * 8000 + b'"}'
            chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
            answer = await raw_request(url, [post_head(PATH, None) + chunked])
            assert_openai_error(answer, 413, "request_too_large")
            # Just under the limit still goes through.
            fits = json.dumps({"model": "llama", "prompt": "y" * 3000}).encode()
            assert (await raw_request(url, [post_head(PATH, len(fits)) + fits])).status == 200
            assert pod.requests == 1
            exposition = router.metrics.exposition().decode()
            assert 'cause="body_too_large"' in exposition

    run(scenario)


async def _good_requests(url: str, count: int) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.post(url + PATH, data=GOOD, headers={"Content-Type": "application/json"}) as response:
                await response.read()
                statuses.append(response.status)
            await asyncio.sleep(0.05)
    return statuses


def test_slow_heads_are_cut_off_while_other_clients_are_served(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        async with router_and_pod(front_end) as (url, pod, _):
            head = post_head(PATH, len(GOOD))
            trickle = [head[i:i + 1] for i in range(len(head))]  # one byte every 0.2 s: 20+ s in all
            slow = [asyncio.ensure_future(raw_request(url, trickle, interval=0.2, limit=15)) for _ in range(4)]
            statuses = await _good_requests(url, 20)
            answers = await asyncio.gather(*slow)
            assert statuses == [200] * 20
            for answer in answers:
                # The head timeout closed the connection long before the head was complete.
                assert answer.closed and answer.status == 0, answer
                assert answer.seconds < 10, answer
            assert pod.requests == 20

    run(scenario)


def test_slow_bodies_get_408_while_other_clients_are_served(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        async with router_and_pod(front_end) as (url, pod, router):
            trickle = [post_head(PATH, len(GOOD))] + [GOOD[i:i + 1] for i in range(len(GOOD))]
            slow = [asyncio.ensure_future(raw_request(url, trickle, interval=0.2, limit=15)) for _ in range(4)]
            statuses = await _good_requests(url, 20)
            answers = await asyncio.gather(*slow)
            assert statuses == [200] * 20
            for answer in answers:
                assert "did not arrive" in assert_openai_error(answer, 408, "request_timeout")["message"]
                assert answer.closed and answer.seconds < 10, answer
            assert pod.requests == 20
            assert 'cause="body_timeout"' in router.metrics.exposition().decode()

    run(scenario)


def test_garbage_instead_of_http_is_refused_and_the_router_keeps_serving(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        async with router_and_pod(front_end) as (url, _pod, _):
            for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, b"HELLO THERE\r\n\r\n",
                            b"POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                            b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"):
                answer = await raw_request(url, [garbage], limit=5)
                assert answer.closed and (answer.status == 0 or 400 <= answer.status < 500), answer
            assert await _good_requests(url, 3) == [200] * 3

    run(scenario)
