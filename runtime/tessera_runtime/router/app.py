"""The aiohttp front end (`--server aiohttp`): aiohttp.web in front of the server-independent `dispatch`.

One catch-all route wraps each `web.Request` in an `Exchange`; everything else (routing, relaying,
errors, the small endpoints) is shared with the lean server.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from ..request_limits import RequestLimits, read_body
from .core import Router
from .endpoints import dispatch
from .exchange import Headers

ROUTER_KEY: web.AppKey[Router] = web.AppKey("router", Router)


class AiohttpExchange:
    """An `Exchange` over aiohttp's request and (stream) response objects."""

    def __init__(self, request: web.Request, limits: RequestLimits) -> None:
        self.request = request
        self.method = request.method
        self.path = request.rel_url.raw_path_qs
        self.headers = request.headers
        self.limits = limits
        self.response: web.StreamResponse | None = None

    async def read_body(self) -> bytes:
        """The body within the limits (`BodyRefused` otherwise)."""
        return await read_body(self.request, self.limits)

    def respond(self, status: int, body: bytes, headers: Headers = (), reason: str = "",
                close: bool = False) -> None:
        """A whole response, returned by the handler."""
        if self.response is not None and self.response.prepared:
            self.response.force_close()  # a stream already started: all that is left is to cut it
            return
        self.response = web.Response(body=body, status=status, reason=reason or None, headers=CIMultiDict(headers))
        if close:
            self.response.force_close()

    async def start_stream(self, status: int, headers: Headers, reason: str = "",
                           content_length: int | None = None) -> None:
        """Prepare a streamed response."""
        response = web.StreamResponse(status=status, reason=reason or None, headers=CIMultiDict(headers))
        if content_length is not None:
            response.content_length = content_length
        self.response = response
        await response.prepare(self.request)

    async def write(self, data: bytes) -> None:
        """Body bytes (aiohttp waits for the client's socket to drain)."""
        assert self.response is not None
        await self.response.write(data)

    async def end_stream(self) -> None:
        """The end of a streamed body."""
        assert self.response is not None
        await self.response.write_eof()


async def handle_any(request: web.Request) -> web.StreamResponse:
    """Every path: `dispatch` decides."""
    router = request.app[ROUTER_KEY]
    exchange = AiohttpExchange(request, router.settings.limits)
    await dispatch(router, exchange)
    if exchange.response is None:  # dispatch always answers; this is a guard, not a path
        return web.Response(status=500)
    return exchange.response


def build_runner(router: Router, shutdown_timeout: float) -> web.AppRunner:
    """An AppRunner for `router`'s app that applies its request-head timeout; no access log."""
    return web.AppRunner(build_app(router), access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout,
                         **router.settings.limits.runner_options())


def build_app(router: Router) -> web.Application:
    """The aiohttp application around `router` (its session opens and closes with the app)."""
    app = web.Application(client_max_size=router.settings.limits.max_body_bytes)
    app[ROUTER_KEY] = router

    async def lifecycle(app: web.Application) -> Any:
        await router.start()
        yield
        await router.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_route("*", "/{tail:.*}", handle_any)
    return app
