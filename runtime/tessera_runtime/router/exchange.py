"""One HTTP request and its response, as the router's request path sees them, whatever the server.

The routing decision (`core`), the upstream relay (`proxy`) and the small endpoints (`endpoints`) are
written against `Exchange`, not against a web framework, so the same code runs behind both front
ends: the lean asyncio.Protocol server (`server`, the default) and aiohttp.web (`app`).

A response is either whole (`respond`: head and body in one write) or streamed (`start_stream`, then
`write` per chunk as it arrives, then `end_stream`). `write` waits while the client's socket buffer is
full (back-pressure) and raises `ConnectionError` once the client has gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from multidict import MultiMapping

from .errors import RouterError

Headers = Iterable[tuple[str, str]]


class Exchange(Protocol):
    """A request being answered."""

    @property
    def method(self) -> str:
        """The request method."""
        ...

    @property
    def path(self) -> str:
        """The request target as sent: path and query, still percent-encoded."""
        ...

    @property
    def headers(self) -> MultiMapping[str]:
        """Request headers (names case-insensitive; original spelling and order kept)."""
        ...

    async def read_body(self) -> bytes:
        """The whole request body within the limits; `request_limits.BodyRefused` otherwise."""
        ...

    def respond(self, status: int, body: bytes, headers: Headers = (), reason: str = "",
                close: bool = False) -> None:
        """Answer with a whole response (`close`: and close the connection after it)."""
        ...

    async def start_stream(self, status: int, headers: Headers, reason: str = "",
                           content_length: int | None = None) -> None:
        """Send a response head whose body follows in `write`s (chunked when unsized)."""
        ...

    async def write(self, data: bytes) -> None:
        """Send body bytes of a streamed response; raises `ConnectionError` when the client left."""
        ...

    async def end_stream(self) -> None:
        """End a streamed response."""
        ...


def respond_error(exchange: Exchange, error: RouterError) -> None:
    """Answer `error` in OpenAI's format (closing the connection when the error says so)."""
    exchange.respond(error.status, error.body(), error.headers(), close=error.close)
