"""The router's upstream HTTP/1.1 client against scripted raw servers: framing, reuse, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tessera_runtime.router.upstream import ConnectFailed, UpstreamBroken, UpstreamPool

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQUEST = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def _serve(script: Script) -> tuple[asyncio.Server, int, list[int]]:
    """A raw server running `script` per connection; returns it, its port and a connection counter."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


def test_content_length_and_chunked_bodies_split_anywhere_and_connections_are_reused() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"7\r\ndata: a\r\n9;ext=1\r\n\n\ndata: b\r\n0\r\nX-Trailer: t\r\n\r\n")
    sized = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Upstream: s\r\n\r\nhello"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in (chunked, sized, chunked):
            await _read_request(reader)
            for i in range(0, len(response), 3):  # dribble the bytes: every split point occurs
                writer.write(response[i:i + 3])
                await writer.drain()
                await asyncio.sleep(0)
        await reader.read()

    async def scenario() -> None:
        server, port, connections = await _serve(script)
        pool = UpstreamPool()
        for expected in ("chunked", "sized", "chunked"):
            connection, head = await pool.send("127.0.0.1", port, REQUEST)
            body = await connection.read_body()
            if expected == "chunked":
                assert (head.status, head.content_type, head.content_length) == (200, "text/event-stream", None)
                assert body == b"data: a\n\ndata: b"
            else:
                assert (head.status, head.reason, head.content_length, body) == (201, "Created", 5, b"hello")
                assert ("X-Upstream", "s") in head.headers
            pool.release(("127.0.0.1", port), connection)
        assert len(connections) == 1  # one keep-alive connection served all three
        pool.close()
        server.close()

    asyncio.run(scenario())


def test_close_delimited_and_bodyless_responses_and_connection_close() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        if b"204" in request:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        else:
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async def scenario() -> None:
        server, port, connections = await _serve(script)
        pool = UpstreamPool()
        key = ("127.0.0.1", port)
        connection, head = await pool.send(*key, REQUEST.replace(b"/v1/completions", b"/204"))
        assert head.status == 204 and await connection.read_body() == b""
        pool.release(key, connection)
        connection, head = await pool.send(*key, REQUEST)
        assert await connection.read_body() == b"ok" and not connection.reusable  # Connection: close
        pool.release(key, connection)
        connection, head = await pool.send(*key, REQUEST)
        assert await connection.read_body() == b"until the end"
        assert len(connections) == 2
        pool.close()
        server.close()

    asyncio.run(scenario())


def test_stale_pooled_connection_is_replaced_but_a_broken_answer_is_not_retried() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        if b"half" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # The next request on this connection races the server's keep-alive timeout: it is read,
        # then the connection closes without a byte of answer.
        await _read_request(reader)

    async def scenario() -> None:
        server, port, connections = await _serve(script)
        pool = UpstreamPool()
        key = ("127.0.0.1", port)
        for _ in range(3):
            connection, _ = await pool.send(*key, REQUEST)
            assert await connection.read_body() == b"ok"
            pool.release(key, connection)
        assert len(connections) == 3  # requests 2 and 3 each met a closing connection, then a fresh one
        connection, _ = await pool.send(*key, REQUEST.replace(b"/v1/completions", b"/half"))
        with pytest.raises(UpstreamBroken) as broken:
            await connection.read_body()
        assert not broken.value.nothing_received
        pool.close()
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectFailed):
            await pool.send(*key, REQUEST)

    asyncio.run(scenario())


def test_slow_readers_pause_the_upstream_socket() -> None:
    payload = b"x" * (2 * 1024 * 1024)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        server, port, _ = await _serve(script)
        pool = UpstreamPool()
        connection, _ = await pool.send("127.0.0.1", port, REQUEST)
        await asyncio.sleep(0.2)  # the client reads nothing for a while
        assert connection._paused and connection._buffered < len(payload)
        assert await connection.read_body() == payload
        pool.close()
        server.close()

    asyncio.run(scenario())
