"""Limits on what a client may send: body size, and time to send the request head and the body.

Shared by the model server and the router's aiohttp front end; the router's lean front end
(`router/server.py`) enforces the same `RequestLimits` with the same meaning in its own protocol code
(the head timer from the connection's start or the previous response, then the body timer, 413 at once
on a declared oversized `Content-Length`, both errors closing the connection). Slow clients (slowloris) are bounded at
two points: the request head must arrive within `header_timeout` of the connection opening (or of
the previous response on a keep-alive connection), else the connection is closed; that is aiohttp's
keep-alive timer, which data arriving does not extend. The body must then arrive within
`body_timeout`, else the client gets a 408. A body above `max_body_bytes` gets a 413, at once when
its `Content-Length` says so. Both errors close the connection, since the rest of the body is unread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class RequestLimits:
    """What one request may cost the server before its handler sees it."""

    max_body_bytes: int = 32 * 1024 * 1024
    """Largest request body accepted (a 413 above)."""
    header_timeout: float = 15.0
    """Seconds for a request head to arrive, from the connection's start or the previous response
    (also how long an idle keep-alive connection stays open)."""
    body_timeout: float = 60.0
    """Seconds for the whole body to arrive once the head has (a 408 after)."""

    lingering_time: float = 2.0
    """Seconds the unread rest of a refused body is still read (so the client sees the error) before
    the connection closes."""

    def runner_options(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` that enforce the head timeout and bound lingering."""
        return {"keepalive_timeout": self.header_timeout, "lingering_time": self.lingering_time}


class BodyRefused(Exception):
    """The body was too large or too slow; `status` is 413 or 408."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, f"The request body is larger than this server's limit of {limit} bytes.",
                       "request_too_large")


async def read_body(request: web.Request, limits: RequestLimits) -> bytes:
    """The whole body within the limits, or `BodyRefused` (answer it with `Connection: close`)."""
    declared = request.content_length
    if declared is not None and declared > limits.max_body_bytes:
        raise _too_large(limits.max_body_bytes)
    try:
        if request.content.is_eof():
            return await request.read()  # the body came with the head (the usual case): nothing to wait for
        async with asyncio.timeout(limits.body_timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limits.max_body_bytes) from None
    except TimeoutError:
        raise BodyRefused(408, f"The request body did not arrive within {limits.body_timeout:g} s.",
                          "request_timeout") from None

