"""Bad input to the model server (issue 14): malformed, oversized and slow (slowloris-style) requests
each get an OpenAI-format error or a timeout, and the server keeps serving other clients meanwhile.

The server's app runs in-process with small limits; every refusal happens before the engine is asked,
so no model is loaded (the real model's request handling is covered by test_runtime_openai_api).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from tessera_runtime.metrics import EngineMetrics
from tessera_runtime.request_limits import RequestLimits
from tessera_runtime.router.testing import assert_openai_error, bound_url, post_head, raw_request
from tessera_runtime.server.app import create_app
from tessera_runtime.server.state import ServerState

LIMITS = RequestLimits(max_body_bytes=4096, header_timeout=1.0, body_timeout=1.0)
MODEL = "smollm2"
PATHS = ("/v1/completions", "/v1/chat/completions")


@asynccontextmanager
async def server() -> AsyncIterator[str]:
    state = ServerState(model_name=MODEL, metrics=EngineMetrics(MODEL, 2048), created=int(time.time()),
                        ready=True, limits=LIMITS)
    runner = web.AppRunner(create_app(state), handler_cancellation=True, access_log=None,
                           **LIMITS.runner_options())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield bound_url(runner)
    finally:
        await runner.cleanup()


async def others_served(url: str, count: int) -> list[int]:
    """Other clients meanwhile: the model list and health, one every 50 ms."""
    statuses = []
    async with aiohttp.ClientSession() as session:
        for index in range(count):
            async with session.get(url + ("/v1/models" if index % 2 else "/health")) as response:
                await response.read()
                statuses.append(response.status)
            await asyncio.sleep(0.05)
    return statuses


@pytest.mark.parametrize("path", PATHS)
def test_malformed_json_gets_400(path: str) -> None:
    async def scenario() -> None:
        async with server() as url:
            for body in (b'{"model": "smollm2", "prompt": ', b"[1, 2]", b"\xff\xfe\x00", b"", b"null"):
                answer = await raw_request(url, [post_head(path, len(body)) + body])
                assert assert_openai_error(answer, 400, "invalid_json")["type"] == "invalid_request_error"

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.parametrize("path", PATHS)
def test_oversized_bodies_get_413(path: str) -> None:
    async def scenario() -> None:
        async with server() as url:
            declared = await raw_request(url, [post_head(path, 64 * 1024 * 1024)])
            assert "4096 bytes" in assert_openai_error(declared, 413, "request_too_large")["message"]
            assert declared.closed and declared.headers.get("connection") == "close"
            payload = json.dumps({"model": MODEL, "prompt": "x" * 9000}).encode()
            chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
            assert_openai_error(await raw_request(url, [post_head(path, None) + chunked]), 413, "request_too_large")
            assert await others_served(url, 2) == [200, 200]

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_slow_heads_and_bodies_are_bounded_while_others_are_served() -> None:
    async def scenario() -> None:
        async with server() as url:
            body = json.dumps({"model": MODEL, "prompt": "hello there"}).encode()
            head = post_head(PATHS[0], len(body))
            slow_head = [head[i:i + 1] for i in range(len(head))]  # a byte every 0.2 s: 20+ s in all
            slow_body = [head] + [body[i:i + 1] for i in range(len(body))]
            heads = [asyncio.ensure_future(raw_request(url, slow_head, interval=0.2, limit=15)) for _ in range(3)]
            bodies = [asyncio.ensure_future(raw_request(url, slow_body, interval=0.2, limit=15)) for _ in range(3)]
            assert await others_served(url, 20) == [200] * 20
            for answer in await asyncio.gather(*heads):
                assert answer.closed and answer.status == 0 and answer.seconds < 10, answer
            for answer in await asyncio.gather(*bodies):
                assert "did not arrive" in assert_openai_error(answer, 408, "request_timeout")["message"]
                assert answer.closed and answer.seconds < 10, answer

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_garbage_instead_of_http_is_refused_and_the_server_keeps_serving() -> None:
    async def scenario() -> None:
        async with server() as url:
            for garbage in (b"\x16\x03\x01\x02\x00\x01\x00" + b"\x00" * 64, b"HELLO THERE\r\n\r\n",
                            b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"):
                answer = await raw_request(url, [garbage], limit=5)
                assert answer.closed and (answer.status == 0 or 400 <= answer.status < 500), answer
            assert await others_served(url, 2) == [200, 200]

    asyncio.run(asyncio.wait_for(scenario(), 60))
