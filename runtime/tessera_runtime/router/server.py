"""The lean front end (`--server lean`, the default): an asyncio.Protocol HTTP/1.1 server for the router.

aiohttp.web's general machinery (request objects, middlewares, stream responses) cost the router more
CPU per request than the model server it fronts. This server does only what the router needs, in one
protocol object per connection: it parses the request head itself (`http1`), reads the whole body
(`Content-Length` or chunked) before the request runs, answers through `endpoints.dispatch` like the
aiohttp front end, and writes a whole response's head and body in one `transport.write`.

- Keep-alive and pipelining: requests on one connection run one at a time, in order; bytes of later
  requests wait in the buffer (reading pauses when they pile up) until the response before is out.
- Streams go out as they arrive (chunked; close-delimited to HTTP/1.0 clients), and `write` waits
  while the transport says its buffer is full (`pause_writing`), so a slow client slows the upstream
  read instead of filling memory.
- A client that disconnects (or closes its sending side: HTTP clients do not half-close to end a
  request) cancels its request: the upstream connection is aborted at once, so the pod stops generating.
- The limits of `request_limits` with the same meaning: the head within `header_timeout` of the
  connection opening or of the previous response (else the connection is closed), the body within
  `body_timeout` (else 408), at most `max_body_bytes` (else 413, at once when `Content-Length` says so);
  errors close the connection after a short lingering read so the client sees the answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from .core import Router
from .endpoints import dispatch
from .errors import RouterError
from .exchange import Headers
from .http1 import (
    MAX_HEAD,
    BodyTooLarge,
    ChunkedBody,
    HeadError,
    RequestHead,
    looks_like_http,
    parse_head,
    response_head,
)

log = logging.getLogger(__name__)

_PIPELINE_BUFFER = 256 * 1024  # buffered bytes of later requests above which reading pauses
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUSES = frozenset((204, 304))


class LeanExchange:
    """One request on a `_ClientConnection`, with its body already read."""

    __slots__ = (
        "_body",
        "_chunked",
        "_conn",
        "_head_only",
        "_http11",
        "_keep_alive",
        "close_after",
        "done",
        "headers",
        "method",
        "path",
        "started",
    )

    def __init__(self, conn: _ClientConnection, head: RequestHead, body: bytes) -> None:
        self.method = head.method
        self.path = head.target
        self.headers = head.headers
        self._body = body
        self._conn = conn
        self._keep_alive = head.keep_alive
        self._http11 = head.http11
        self._head_only = head.method == "HEAD"
        self._chunked = False
        self.started = False
        self.done = False
        self.close_after = False

    async def read_body(self) -> bytes:
        """The body (read, within the limits, before the request started)."""
        return self._body

    def respond(self, status: int, body: bytes, headers: Headers = (), reason: str = "",
                close: bool = False) -> None:
        """Head and body in one write."""
        if self.started:  # a stream already started: all that is left is to cut it
            self.close_after = self.done = True
            return
        close = close or not self._keep_alive or self._conn.server.draining
        framing = "" if status in _NO_BODY_STATUSES else f"Content-Length: {len(body)}\r\n"
        head = response_head(status, reason, headers if isinstance(headers, list) else list(headers), framing, close)
        self._conn.send(head if self._head_only or not framing else head + body)
        self.started = self.done = True
        self.close_after = close

    async def start_stream(self, status: int, headers: Headers, reason: str = "",
                           content_length: int | None = None) -> None:
        """The head of a response whose body follows as it arrives."""
        conn = self._conn
        if conn.lost:
            raise ConnectionResetError("the client closed the connection")
        close = not self._keep_alive or conn.server.draining
        if content_length is not None:
            framing = f"Content-Length: {content_length}\r\n"
        elif self._http11:
            framing = "Transfer-Encoding: chunked\r\n"
            self._chunked = not self._head_only
        else:
            framing, close = "", True  # HTTP/1.0: the body ends with the connection
        self.started = True
        self.close_after = close
        conn.send(response_head(status, reason, headers if isinstance(headers, list) else list(headers), framing, close))

    async def write(self, data: bytes) -> None:
        """Body bytes, framed as a chunk when chunked; waits while the client's buffer is full."""
        conn = self._conn
        if conn.lost:
            raise ConnectionResetError("the client closed the connection")
        if not data or self._head_only:
            return
        conn.send(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        if conn.write_paused:
            await conn.drain()

    async def end_stream(self) -> None:
        """The last chunk."""
        if self._conn.lost:
            raise ConnectionResetError("the client closed the connection")
        if self._chunked:
            self._conn.send(b"0\r\n\r\n")
        self.done = True


class _ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs them one at a time, enforces the limits."""

    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: RequestHead | None = None
        """A parsed head whose body is still arriving."""
        self.chunked: ChunkedBody | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.lost = False
        self.write_paused = False
        self.read_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.discarding = False
        self.peer_eof = False
        self.continue_sent = False

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport but have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        self._arm(self.server.limits.header_timeout, self._head_timeout)

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        self.buffer += data
        if self.task is None:
            self._advance()
        elif len(self.buffer) > _PIPELINE_BUFFER and not self.read_paused and self.transport is not None:
            self.transport.pause_reading()
            self.read_paused = True

    def eof_received(self) -> bool:
        # A client closing its side while its request runs has gone (HTTP clients do not half-close
        # to end a request): the transport closes, and connection_lost cancels the request.
        self.peer_eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        self._disarm()
        if self.task is not None:
            self.task.cancel()  # the client left: abort the upstream exchange too
        self._wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()

    # --- reading requests ------------------------------------------------------------------------

    def _advance(self) -> None:
        """Parse the next request in the buffer; start it once its whole body is there."""
        buffer = self.buffer
        limits = self.server.limits
        try:
            head = self.head
            if head is None:
                while buffer[:2] == b"\r\n":  # stray line ends between requests are allowed
                    del buffer[:2]
                end = buffer.find(b"\r\n\r\n")
                if end < 0 or end > MAX_HEAD:
                    if len(buffer) > MAX_HEAD:
                        raise HeadError("The request head is too large.", 431)
                    if not looks_like_http(buffer):
                        raise HeadError("This is not an HTTP request.")
                    return
                head = parse_head(bytes(buffer[:end]))
                del buffer[:end + 4]
                if head.content_length is not None and head.content_length > limits.max_body_bytes:
                    raise BodyTooLarge()
                self.head = head
                self.chunked = ChunkedBody(limits.max_body_bytes) if head.chunked else None
                self.continue_sent = False
                self._disarm()
            if self.chunked is not None:
                if not self.chunked.feed(buffer):
                    self._await_body(head)
                    return
                body = self.chunked.body()
                self.chunked = None
            else:
                length = head.content_length or 0
                if len(buffer) < length:
                    self._await_body(head)
                    return
                body = bytes(buffer[:length]) if length else b""
                del buffer[:length]
        except HeadError as exc:
            self._refuse(RouterError(exc.status, str(exc), cause="bad_request", code="invalid_request"), count=False)
            return
        except BodyTooLarge:
            self._refuse(RouterError(413, f"The request body is larger than this server's limit of "
                                          f"{limits.max_body_bytes} bytes.", cause="body_too_large",
                                     code="request_too_large"))
            return
        self.head = None
        self._disarm()
        self.task = self.loop.create_task(self._serve(LeanExchange(self, head, body)))

    def _await_body(self, head: RequestHead) -> None:
        if self.timer is None:
            self._arm(self.server.limits.body_timeout, self._body_timeout)
        if head.expect_continue and not self.continue_sent:
            self.continue_sent = True
            self.send(_CONTINUE)

    async def _serve(self, exchange: LeanExchange) -> None:
        try:
            await dispatch(self.server.router, exchange)
        except asyncio.CancelledError:
            return  # the client left (or shutdown gave up on the request)
        except Exception:  # dispatch answers everything; this keeps the connection sane regardless
            log.exception("request on the lean server failed")
        finally:
            self.task = None
        if self.lost or self.transport is None:
            return
        if not exchange.done or exchange.close_after or self.peer_eof or self.server.draining:
            self.transport.close()  # sends what is buffered first
            return
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self._arm(self.server.limits.header_timeout, self._head_timeout)
        if self.buffer:
            self._advance()

    # --- limits and errors -----------------------------------------------------------------------

    def _arm(self, delay: float, callback: object) -> None:
        self._disarm()
        self.timer = self.loop.call_later(delay, callback)  # type: ignore[arg-type]

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_timeout(self) -> None:
        self.timer = None
        if self.task is None and self.head is None and self.transport is not None:
            self.transport.close()  # slowloris, or an idle keep-alive connection: no answer owed

    def _body_timeout(self) -> None:
        self.timer = None
        if self.task is None and self.head is not None:
            limit = self.server.limits.body_timeout
            self._refuse(RouterError(408, f"The request body did not arrive within {limit:g} s.",
                                     cause="body_timeout", code="request_timeout"))

    def _refuse(self, error: RouterError, count: bool = True) -> None:
        """Answer an error the request never got past, then close (after lingering)."""
        self.head = None
        self.chunked = None
        self._disarm()
        if count:
            metrics = self.server.router.metrics
            metrics.count_error("", "", error.cause)
            metrics.count_request("", "", error.status)
        body = error.body()
        self.send(response_head(error.status, "", error.headers(), f"Content-Length: {len(body)}\r\n", True) + body)
        self._linger()

    def _linger(self) -> None:
        """Close after the answer, reading and dropping what the client still sends for a while, so
        that it reads the answer instead of a connection reset."""
        transport = self.transport
        if transport is None or self.lost:
            return
        self.discarding = True
        self.buffer.clear()
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self.timer = self.loop.call_later(self.server.limits.lingering_time, transport.close)

    # --- writing ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write to the client unless it is gone."""
        if not self.lost and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its low-water mark."""
        while self.write_paused and not self.lost:
            waiter = self.drain_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self.drain_waiter = None
        if self.lost:
            raise ConnectionResetError("the client closed the connection")

    def _wake_writer(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close_if_idle(self) -> None:
        """Close the connection unless a request is running on it (shutdown)."""
        if self.task is None and self.transport is not None:
            self.transport.close()


class LeanServer:
    """Listens and serves `router` with `_ClientConnection`s."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.limits = router.settings.limits
        self.connections: set[_ClientConnection] = set()
        self.draining = False
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        """Listen on host:port (0: a free port)."""
        self._server = await self.loop.create_server(lambda: _ClientConnection(self), host, port, backlog=backlog,
                                                     reuse_address=True)

    @property
    def port(self) -> int:
        """The port listened on."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting; requests in progress get `timeout` seconds to finish; then close everything."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = self.loop.time() + timeout
        while any(conn.task is not None for conn in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        await asyncio.sleep(0)  # let the cancelled requests unwind
        if self._server is not None:
            await self._server.wait_closed()
