"""The router's state and the path of one inference request: name -> Model -> version -> pod.

`Router` owns the routing table, the API keys, the endpoint picker, the hold queue and the metrics;
`Router.handle` runs one request: authenticate, parse just enough of the body to find the model,
authorize, hold while the Model has no ready endpoint, then forward the body unchanged.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..request_limits import BodyRefused, RequestLimits
from .auth import KeyStore
from .balancer import BalancerSettings, EndpointPicker, prompt_prefix
from .errors import RouterError, bad_request, unknown_model
from .exchange import Exchange, respond_error
from .hold import DemandMarker, HoldQueue, HoldSettings, MarkDemand
from .metrics import RouterMetrics
from .proxy import Forwarder, ProxySettings
from .table import Endpoint, ModelRoute, RoutingTable

VERSION_HEADER = "X-Tessera-Version"
SESSION_HEADER = "X-Session-Id"
MODEL_HEADER = "X-Tessera-Model"


@dataclass(frozen=True)
class RouterSettings:
    """Everything tunable about request handling."""

    hold: HoldSettings = field(default_factory=HoldSettings)
    balancer: BalancerSettings = field(default_factory=BalancerSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    limits: RequestLimits = field(default_factory=RequestLimits)
    """Body size and the time clients get to send heads and bodies."""
    api_keys: bool = False
    """Require API keys (from Secrets or the routes file)."""


class Router:
    """One router process: its table, keys, metrics and the request path."""

    def __init__(self, settings: RouterSettings | None = None, mark_demand: MarkDemand | None = None) -> None:
        self.settings = settings or RouterSettings()
        self.table = RoutingTable()
        self.keys = KeyStore(enabled=self.settings.api_keys)
        self.metrics = RouterMetrics()
        self.picker = EndpointPicker(self.settings.balancer)
        self.marker = DemandMarker(mark_demand, self.settings.hold.demand_interval)
        self.hold = HoldQueue(self.table, self.settings.hold, self.marker, self.metrics)
        self.session: aiohttp.ClientSession | None = None
        """For the load scraper; requests go through `forwarder`'s own pool."""
        self.forwarder = Forwarder(self.settings.proxy)
        self.synced: list[asyncio.Event] = []
        """One event per source; the router is ready once all are set."""

    async def start(self) -> None:
        """Open the client session the load scraper uses."""
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        """Close the scraper's session and every pooled upstream connection."""
        self.forwarder.pool.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def ready(self) -> bool:
        """Whether every source has delivered its first full state."""
        return all(event.is_set() for event in self.synced)

    def _pinned_version(self, route: ModelRoute, exchange: Exchange) -> str | None:
        pin = exchange.headers.get(VERSION_HEADER)
        if not pin:
            return None
        version = route.resolve_version(pin)
        if version is None:
            raise bad_request(f"The model `{route.spec.served_name}` has no version `{pin}`.",
                              param=VERSION_HEADER)
        return version

    def _ready_check(self, pinned: str | None) -> Any:
        def ready(route: ModelRoute) -> bool:
            now = time.monotonic()
            if pinned is not None:
                return bool(route.accepting(pinned, now))
            return route.has_capacity(now)

        return ready

    def _endpoint_chooser(self, route: ModelRoute, pinned: str | None, affinity: str | None) -> Any:
        picker = self.picker

        def next_endpoint(exclude: set[str]) -> Endpoint | None:
            now = time.monotonic()
            usable: dict[str, list[Endpoint]] = {}

            def available(version: str) -> bool:
                found = route.accepting(version, now)
                if exclude:
                    found = [e for e in found if e.url not in exclude]
                usable[version] = found
                return bool(found)

            if pinned is not None:
                chosen = pinned if available(pinned) else None
            else:
                chosen = route.chooser.pick(available)
            return picker.pick(usable[chosen], affinity) if chosen is not None else None

        return next_endpoint

    async def handle(self, exchange: Exchange, model_from_body: bool = True) -> None:
        """Route and answer one request that names a model (in its JSON body, or the `X-Tessera-Model`
        header); every failure is answered in OpenAI's format and counted."""
        labels = ("", "")
        status = 500
        headers = exchange.headers
        try:
            key = self.keys.authenticate(headers)
            try:
                body = await exchange.read_body()
            except BodyRefused as exc:
                refused = "body_too_large" if exc.status == 413 else "body_timeout"
                raise RouterError(exc.status, exc.message, cause=refused, code=exc.code, close=True) from None
            payload: dict[str, Any] = {}
            name = headers.get(MODEL_HEADER)
            if model_from_body and body:
                try:
                    parsed = json.loads(body)
                except ValueError:
                    raise bad_request("The request body is not valid JSON.") from None
                if not isinstance(parsed, dict):
                    raise bad_request("The request body must be a JSON object.")
                payload = parsed
                name = payload.get("model", name)
            if not isinstance(name, str) or not name:
                raise bad_request("You must provide a model parameter.", param="model")
            route = self.table.lookup(name)
            if route is None:
                raise unknown_model(name)
            labels = (route.spec.name, route.spec.namespace)
            self.keys.authorize(key, route.spec, name)
            if payload and name != route.spec.served_name:
                # Asked by alias: the engine knows only its served name. Served names (the common
                # case) are forwarded byte for byte.
                payload["model"] = route.spec.served_name
                body = json.dumps(payload).encode()
            pinned = self._pinned_version(route, exchange)
            ready = self._ready_check(pinned)
            if not ready(route):
                await self.hold.wait(route, ready)
            session_id = headers.get(SESSION_HEADER)
            affinity = f"session:{session_id}" if session_id else prompt_prefix(
                payload, self.settings.balancer.prefix_chars)
            series = self.metrics.series(*labels)
            status, cause = await self.forwarder.forward(
                exchange, body, self._endpoint_chooser(route, pinned, affinity), series)
            if cause is not None:
                self.metrics.count_error(*labels, cause)
        except RouterError as exc:
            status = exc.status
            self.metrics.count_error(*labels, exc.cause)
            respond_error(exchange, exc)
        except asyncio.CancelledError:
            status = 499  # the client went away (the lean server cancels the request; aiohttp may)
            self.metrics.count_error(*labels, "client_disconnected")
            raise
        finally:
            self.metrics.count_request(*labels, status)
