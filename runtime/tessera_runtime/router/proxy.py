"""Forwarding one request to a pod: pooled connections, unbuffered streams, retry when refused.

The body goes upstream as the client sent it (no re-serialisation), over the lean keep-alive client
of `upstream`. Small sized responses are read whole and answered in one write; everything else (SSE
streams above all) is written to the client chunk by chunk as it arrives. A connection refused (or
otherwise not established) before any byte was sent is retried on another endpoint; once a request
reached a pod it is never sent twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from multidict import MultiMapping

from .errors import RouterError
from .exchange import Exchange
from .metrics import ModelSeries
from .table import Endpoint
from .upstream import ConnectFailed, ResponseHead, UpstreamError, UpstreamPool, _Connection

log = logging.getLogger(__name__)

# Headers that describe one connection, not the message (RFC 9110 7.6.1), plus those set per hop.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Expect",
    )
)  # fmt: skip
_KEY_HEADERS = frozenset(("authorization", "api-key", "x-api-key"))
_WHOLE_BODY_LIMIT = 1 << 20
_BODYLESS_METHODS = frozenset(("GET", "HEAD", "DELETE", "OPTIONS"))

NextEndpoint = Callable[[set[str]], Endpoint | None]


@dataclass(frozen=True)
class ProxySettings:
    """Knobs of forwarding."""

    connect_timeout: float = 5.0
    """Seconds to establish a connection to a pod."""
    connect_attempts: int = 3
    """Endpoints tried when connections are refused."""
    refused_cooldown: float = 2.0
    """Seconds an endpoint that refused a connection gets no new requests (the watch removes it soon)."""
    strip_authorization: bool = False
    """Drop the client's Authorization header (when it carries a router API key)."""


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    host_header: str
    base_path: str


def parse_target(url: str) -> _Target:
    """Host, port, Host header and path prefix of an `http://` endpoint URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"endpoint {url!r} is not an http:// URL")
    port = parts.port or 80
    return _Target(parts.hostname, port, parts.netloc, parts.path.rstrip("/"))


def request_bytes(method: str, path: str, target: _Target, headers: MultiMapping[str], body: bytes,
                  strip_authorization: bool) -> bytes:
    """The HTTP/1.1 request for the pod: the client's headers minus hop-by-hop ones, then the body."""
    parts = [f"{method} {target.base_path}{path} HTTP/1.1\r\nHost: {target.host_header}\r\n"]
    for name, value in headers.items():
        lower = name.lower()
        if lower in _HOP_BY_HOP or (strip_authorization and lower in _KEY_HEADERS):
            continue
        parts.append(f"{name}: {value}\r\n")
    if body or method not in _BODYLESS_METHODS:
        parts.append(f"Content-Length: {len(body)}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape") + body


class Forwarder:
    """Sends requests to endpoints over pooled keep-alive connections."""

    def __init__(self, settings: ProxySettings, pool: UpstreamPool | None = None) -> None:
        self.settings = settings
        self.pool = pool or UpstreamPool(connect_timeout=settings.connect_timeout)
        self._targets: dict[str, _Target] = {}

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 4096:  # pods come and go; keep the cache bounded
                self._targets.clear()
            target = self._targets[url] = parse_target(url)
        return target

    async def forward(
        self,
        exchange: Exchange,
        body: bytes,
        next_endpoint: NextEndpoint,
        series: ModelSeries,
    ) -> tuple[int, str | None]:
        """Proxy the request; returns the status answered and, when it failed, the error cause to count."""
        tried: set[str] = set()
        method = exchange.method
        path = exchange.path
        for _attempt in range(max(1, self.settings.connect_attempts)):
            endpoint = next_endpoint(tried)
            if endpoint is None:
                break
            tried.add(endpoint.url)
            target = self._target(endpoint.url)
            payload = request_bytes(method, path, target, exchange.headers, body, self.settings.strip_authorization)
            endpoint.outstanding += 1
            series.inflight.inc()
            try:
                sent = time.perf_counter()
                try:
                    connection, head = await self.pool.send(target.host, target.port, payload, method == "HEAD")
                except ConnectFailed as exc:
                    # Nothing reached the pod: safe to try another one.
                    endpoint.failed_until = time.monotonic() + self.settings.refused_cooldown
                    log.debug("%s; trying another endpoint", exc)
                    continue
                except UpstreamError as exc:
                    raise RouterError(502, "The model server failed before answering.", cause="upstream_error",
                                      type_="server_error", code="upstream_error") from exc
                return await self._relay(exchange, target, connection, head, sent, series)
            finally:
                endpoint.outstanding -= 1
                series.inflight.dec()
        raise RouterError(
            503,
            "No replica of the model accepted the connection" + (f" (tried {len(tried)})." if tried else "."),
            cause="upstream_unreachable", type_="service_unavailable", code="upstream_unreachable",
            retry_after=1,
        )

    async def _relay(
        self, exchange: Exchange, target: _Target, connection: _Connection, head: ResponseHead, sent: float,
        series: ModelSeries,
    ) -> tuple[int, str | None]:
        headers = head.end_to_end
        streaming = head.content_type == "text/event-stream"
        cause = "upstream_status" if head.status >= 500 else None
        key = (target.host, target.port)
        if head.content_length is not None and head.content_length <= _WHOLE_BODY_LIMIT and not streaming:
            try:
                data = await connection.read_body()
            except UpstreamError as exc:
                connection.abort()
                raise RouterError(502, "The model server broke off its answer.", cause="upstream_broken",
                                  type_="server_error", code="upstream_error") from exc
            except BaseException:
                connection.abort()
                raise
            series.ttft.observe(time.perf_counter() - sent)
            self.pool.release(key, connection)
            exchange.respond(head.status, data, headers, head.reason)
            return head.status, cause
        finished = False
        try:
            # A large sized body keeps its length; SSE and other unsized bodies go out chunked.
            await exchange.start_stream(head.status, headers, head.reason, head.content_length)
            first = True
            while (chunk := await connection.read_chunk()) is not None:
                if first:
                    series.ttft.observe(time.perf_counter() - sent)
                    first = False
                await exchange.write(chunk)
            finished = True
        except UpstreamError:
            # The pod went away mid-answer; the status is already sent, so say it in the stream.
            cause = "upstream_broken"
            if streaming:
                error = {"error": {"message": "The model server broke off the stream.", "type": "server_error",
                                   "param": None, "code": "upstream_error"}}
                with contextlib.suppress(ConnectionError):
                    await exchange.write(b"data: " + json.dumps(error).encode() + b"\n\n")
        except ConnectionError:
            # The client left: drop the upstream connection so the pod stops generating.
            return 499, "client_disconnected"
        finally:
            if finished:
                self.pool.release(key, connection)
            else:
                connection.abort()
        try:
            await exchange.end_stream()
        except ConnectionError:
            return 499, "client_disconnected"
        return head.status, cause
