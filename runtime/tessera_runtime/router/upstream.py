"""A lean HTTP/1.1 client for the router's upstream leg: pooled keep-alive connections to pods.

The router's client side is its hot path: aiohttp's general-purpose client spends about three times
the CPU of this one per request (cookies, tracing, URL objects, timers), which on a small machine is
the difference between meeting the latency target and not. This client does only what proxying to
model servers needs: one request per connection at a time, `Content-Length`, chunked and
close-delimited bodies, back-pressure on slow clients, and connection reuse.

Errors say how far the request got, which decides whether it may be retried:
`ConnectFailed` (nothing sent: try another pod) and `UpstreamBroken` (the pod may have seen it).
A pooled connection the pod closed while idle is replaced transparently when not a byte came back.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import cast

# Headers that describe one connection, not the message (RFC 9110 7.6.1): never relayed to clients.
HOP_BY_HOP_RESPONSE = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length",
))  # fmt: skip
_HIGH_WATER = 256 * 1024  # buffered body bytes above which the pod's socket stops being read
_MAX_HEAD = 64 * 1024


class UpstreamError(Exception):
    """The upstream exchange failed."""


class ConnectFailed(UpstreamError):
    """No connection could be made: nothing was sent, another pod may be tried."""


class UpstreamBroken(UpstreamError):
    """The connection failed after the request was (at least partly) sent."""

    def __init__(self, message: str, *, nothing_received: bool = False) -> None:
        super().__init__(message)
        self.nothing_received = nothing_received


@dataclass
class ResponseHead:
    """Status line and headers of a response."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    content_length: int | None
    content_type: str
    end_to_end: list[tuple[str, str]]
    """`headers` without the hop-by-hop ones: what a proxy passes on."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._head: asyncio.Future[ResponseHead] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._done = False
        self._paused = False
        self._received = 0
        self._no_body = False
        self._keep_alive = True
        self._mode = ""  # "length", "chunked", "close" once the head is parsed
        self._remaining = 0
        self._chunk_state = "size"

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport but have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._head is None or self._done:
            self.abort()  # bytes on an idle connection: nothing can be trusted on it any more
            return
        self._received += len(data)
        self._buffer += data
        try:
            if self._head is not None and not self._head.done():
                self._parse_head()
            if self._mode:
                self._parse_body()
        except (ValueError, IndexError) as exc:
            self._fail(UpstreamBroken(f"malformed response from the model server: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.reusable = False
        if self._mode == "close" and not self._done:
            self._finish()
        elif self._head is not None and (not self._head.done() or (self._mode and not self._done)):
            reason = f"the model server closed the connection ({exc or 'EOF'})"
            self._fail(UpstreamBroken(reason, nothing_received=self._received == 0))

    # --- request/response ------------------------------------------------------------------------

    def start(self, request: bytes, no_body: bool) -> asyncio.Future[ResponseHead]:
        """Send a request; the future resolves with the response head."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._chunks.clear()
        self._buffer.clear()
        self._buffered = 0
        self._error = None
        self._done = False
        self._received = 0
        self._no_body = no_body
        self._mode = ""
        self.reusable = False
        self.transport.write(request)
        return self._head

    def _parse_head(self) -> None:
        assert self._head is not None
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    raise ValueError("response head too large")
                return
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            del self._buffer[:end + 4]
            version, _, rest = lines[0].partition(" ")
            code, _, reason = rest.partition(" ")
            status = int(code)
            if 100 <= status < 200:
                continue  # interim response (100 Continue): the real one follows
            break
        headers: list[tuple[str, str]] = []
        end_to_end: list[tuple[str, str]] = []
        length: int | None = None
        chunked = False
        content_type = ""
        keep_alive = version == "HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            value = value.strip()
            lower = name.lower()
            headers.append((name, value))
            if lower not in HOP_BY_HOP_RESPONSE:
                end_to_end.append((name, value))
                if lower == "content-type":
                    content_type = value.split(";")[0].strip().lower()
            elif lower == "content-length":
                length = int(value)
            elif lower == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif lower == "connection":
                keep_alive = "close" not in value.lower() and (keep_alive or "keep-alive" in value.lower())
        self._keep_alive = keep_alive
        if self._no_body or status in (204, 304):
            self._mode, length = "length", 0
        elif chunked:
            self._mode, length = "chunked", None
            self._chunk_state = "size"
        elif length is not None:
            self._mode = "length"
        else:
            self._mode, self._keep_alive = "close", False
        self._remaining = length or 0
        self._head.set_result(ResponseHead(status, reason, headers, length, content_type, end_to_end))
        if self._mode == "length" and self._remaining == 0:
            self._finish()

    def _parse_body(self) -> None:
        buffer = self._buffer
        if self._done:
            buffer.clear()
            return
        if self._mode == "close":
            if buffer:
                self._deliver(bytes(buffer))
                buffer.clear()
            return
        if self._mode == "length":
            if buffer:
                take = min(self._remaining, len(buffer))
                self._deliver(bytes(buffer[:take]))
                del buffer[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._finish()
            return
        while buffer:  # chunked
            if self._chunk_state == "size":
                end = buffer.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buffer[:end]).split(b";")[0].strip(), 16)
                del buffer[:end + 2]
                self._remaining = size
                self._chunk_state = "data" if size else "trailer"
            elif self._chunk_state == "data":
                take = min(self._remaining, len(buffer))
                self._deliver(bytes(buffer[:take]))
                del buffer[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_state = "crlf"
            elif self._chunk_state == "crlf":
                if len(buffer) < 2:
                    return
                del buffer[:2]
                self._chunk_state = "size"
            else:  # trailer lines until an empty one
                end = buffer.find(b"\r\n")
                if end < 0:
                    return
                del buffer[:end + 2]
                if end == 0:
                    self._finish()
                    return

    def _deliver(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self.reusable = self._keep_alive and not self.closed and not self._buffer
        self._wake()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved here: the caller may have stopped waiting
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read_chunk(self) -> bytes | None:
        """The next body bytes as they arrived, or None at the end of the body."""
        while True:
            if self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                if self._paused and self._buffered < _HIGH_WATER // 4 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self._done:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read_body(self) -> bytes:
        """The whole body."""
        parts = []
        while (chunk := await self.read_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def abort(self) -> None:
        """Drop the connection (the pod sees the client go and can stop generating)."""
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """Idle keep-alive connections per (host, port)."""

    def __init__(self, connect_timeout: float = 5.0, idle_timeout: float = 4.0) -> None:
        self.connect_timeout = connect_timeout
        # Below uvicorn's 5 s keep-alive default, so the pod rarely closes a connection we are about to use.
        self.idle_timeout = idle_timeout
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(loop.create_connection(_Connection, host, port),
                                                 self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        return protocol

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.idle_timeout:
                return connection
            connection.abort()
        return None

    def release(self, key: tuple[str, int], connection: _Connection) -> None:
        """Return a connection whose response was read to the end (others are closed)."""
        if connection.reusable and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(connection)
        else:
            connection.abort()

    async def send(self, host: str, port: int, request: bytes, no_body: bool = False
                   ) -> tuple[_Connection, ResponseHead]:
        """Send `request` (head and body bytes); returns the connection and the response head."""
        key = (host, port)
        connection = self._take(key)
        if connection is not None:
            try:
                return connection, await self._exchange(connection, request, no_body)
            except UpstreamBroken as exc:
                if not exc.nothing_received:
                    raise
                # The pod closed the idle connection as we reused it: a fresh one is safe.
        connection = await self._connect(host, port)
        return connection, await self._exchange(connection, request, no_body)

    @staticmethod
    async def _exchange(connection: _Connection, request: bytes, no_body: bool) -> ResponseHead:
        try:
            return await connection.start(request, no_body)
        except BaseException:
            connection.abort()
            raise

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()
