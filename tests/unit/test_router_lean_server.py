"""The lean front end's HTTP/1.1 handling: pipelining, chunked request bodies, 100-continue, refusals of
ambiguous framing, back-pressure from slow clients, and a client's disconnect aborting the upstream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from tessera_runtime.router.http1 import ChunkedBody, HeadError, parse_head
from tessera_runtime.router.testing import FakeUpstream, router_from_routes, serve_router

GOOD = json.dumps({"model": "m", "prompt": "hi"}).encode()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length or chunked body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
        return int(head[0].split(" ")[1]), headers, bytes(body)
    return int(head[0].split(" ")[1]), headers, await reader.readexactly(int(headers.get("content-length", "0")))


@asynccontextmanager
async def lean_router(endpoint: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """The lean router in front of `endpoint`, and a raw connection to it."""
    router = router_from_routes([{"name": "m", "versions": [{"version": "v1", "endpoints": [endpoint]}]}])
    async with serve_router(router, server="lean") as url:
        host, _, port = url.removeprefix("http://").partition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            yield reader, writer
        finally:
            writer.close()


def request(body: bytes, extra: str = "", path: str = "/v1/completions") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    async def scenario() -> None:
        pod = FakeUpstream("pod")
        await pod.start()
        async with lean_router(pod.url) as (reader, writer):
            chat = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
            stream = json.dumps({"model": "m", "prompt": "x", "stream": True}).encode()
            writer.write(request(GOOD) + request(stream) + request(chat, path="/v1/chat/completions")
                         + b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            first, second, third, fourth = [await read_response(reader) for _ in range(4)]
            assert first[0] == 200 and json.loads(first[2])["object"] == "text_completion"
            assert second[0] == 200 and second[2].count(b"data: ") == 4 and second[2].endswith(b"[DONE]\n\n")
            assert third[0] == 200 and json.loads(third[2])["object"] == "chat.completion"
            assert fourth[0] == 200 and json.loads(fourth[2]) == {"status": "ok"}
            assert pod.requests == 3
        await pod.stop()

    run(scenario)


def test_chunked_request_bodies_and_expect_continue_reach_the_pod_intact() -> None:
    async def scenario() -> None:
        pod = FakeUpstream("pod")
        await pod.start()
        async with lean_router(pod.url) as (reader, writer):
            pieces = [GOOD[:5], GOOD[5:17], GOOD[17:]]
            chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nTrailer: x\r\n\r\n"
            head = b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            for index in range(0, len(head + chunked), 7):  # split anywhere
                writer.write((head + chunked)[index:index + 7])
                await asyncio.sleep(0.001)
            status, _, _ = await read_response(reader)
            assert status == 200 and pod.last_body == GOOD
            writer.write(f"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: {len(GOOD)}\r\n"
                         "Expect: 100-continue\r\n\r\n".encode())
            interim = await reader.readuntil(b"\r\n\r\n")
            assert interim.startswith(b"HTTP/1.1 100")
            writer.write(GOOD)
            assert (await read_response(reader))[0] == 200 and pod.requests == 2
        await pod.stop()

    run(scenario)


def test_ambiguous_framing_is_refused() -> None:
    for head in (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
                 b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4",
                 b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked",
                 b"POST / HTTP/1.1\r\nContent-Length: +3", b"POST / HTTP/1.1\r\n X-Folded: yes",
                 b"POST / HTTP/1.1\r\nBad Name: x", b"GET http://elsewhere/ HTTP/1.1", b"GET / HTTP/2.0"):
        try:
            parse_head(head)
        except HeadError:
            continue
        raise AssertionError(f"accepted {head!r}")
    assert parse_head(b"POST /v1/x?a=1 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2").keep_alive
    assert not parse_head(b"GET / HTTP/1.1\r\nConnection: close").keep_alive
    for body in (b"0x3\r\nabc\r\n0\r\n\r\n", b"3\r\nabcX\r\n0\r\n\r\n", b"zz\r\n"):
        try:
            ChunkedBody(100).feed(bytearray(body))
        except HeadError:
            continue
        raise AssertionError(f"accepted chunked body {body!r}")


async def _raw_upstream(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                        ) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_a_client_that_leaves_aborts_the_upstream_connection() -> None:
    async def scenario() -> None:
        closed: asyncio.Queue[str] = asyncio.Queue()

        async def pod(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = json.loads(await reader.readexactly(length))
            if body.get("stream"):  # one event, then nothing: a long generation
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                             b"\r\n6\r\ndata: \r\n")
            await reader.read()  # until the router drops the connection
            await closed.put("stream" if body.get("stream") else "waiting")
            writer.close()

        server, url = await _raw_upstream(pod)
        for stream in (True, False):
            async with lean_router(url) as (reader, writer):
                body = json.dumps({"model": "m", "prompt": "x", "stream": stream}).encode()
                writer.write(request(body))
                if stream:
                    await reader.readuntil(b"data: ")  # the first event came through unbuffered
                else:
                    await asyncio.sleep(0.2)  # the pod has the request and has not answered
                writer.close()
                assert await asyncio.wait_for(closed.get(), 5) == ("stream" if stream else "waiting")
        server.close()

    run(scenario)


def test_a_slow_client_pauses_the_upstream_instead_of_buffering() -> None:
    total = 96 << 20
    async def scenario() -> None:
        sent = 0

        async def pod(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sent
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            block = b"x" * (1 << 20)
            for _ in range(total >> 20):
                writer.write(b"100000\r\n" + block + b"\r\n")
                await writer.drain()
                sent += len(block)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            writer.close()

        server, url = await _raw_upstream(pod)
        async with lean_router(url) as (reader, writer):
            writer.write(request(json.dumps({"model": "m", "prompt": "x", "stream": True}).encode()))
            await asyncio.sleep(1.5)  # the client reads nothing meanwhile
            stalled_at = sent
            # Only socket buffers and the router's small ones hold the stream: far from all of it.
            assert stalled_at < total // 2, stalled_at
            status, _, body = await read_response(reader)
            assert status == 200 and len(body) == total and sent == total
        server.close()

    run(scenario)
