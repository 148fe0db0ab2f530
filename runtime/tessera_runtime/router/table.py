"""The routing table: which Models exist, the names they answer to, their versions' weights and endpoints.

Sources (the Kubernetes watches, the routes file, tests) write it; the request path only reads it.
Everything runs on the event loop, so no locks: a source running in a thread hands its updates over
with `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .weights import SmoothWeightedRoundRobin

ModelKey = tuple[str, str]
"""(namespace, Model name): identifies a Model across namespaces."""


@dataclass(eq=False)
class Endpoint:
    """One serving pod (or any OpenAI server) of one version of a Model.

    `outstanding` counts the router's requests in flight to it; `waiting` and `kv_cache_usage` come
    from the pod's own /metrics (vLLM's `vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc`).
    """

    url: str
    version: str
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    outstanding: int = 0
    waiting: float = 0.0
    kv_cache_usage: float = 0.0
    failed_until: float = 0.0
    """Monotonic time before which a refused connection keeps it out of new picks."""

    def accepts(self, now: float) -> bool:
        """Whether new requests may go here: ready, not terminating, and not recently refusing."""
        return self.ready and not self.terminating and self.failed_until <= now

    def load(self) -> float:
        """Requests this pod is working on or queueing, as far as the router knows."""
        return self.outstanding + self.waiting


@dataclass(frozen=True)
class EndpointState:
    """What a source reports about one endpoint (the EndpointSlice conditions, or a routes-file entry)."""

    url: str
    ready: bool = True
    serving: bool = True
    terminating: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """What a source reports about one Model: names, version weights and the stable/candidate roles."""

    namespace: str
    name: str
    served_name: str
    aliases: tuple[str, ...] = ()
    traffic: tuple[tuple[str, int], ...] = ()
    stable: str | None = None
    candidate: str | None = None

    @property
    def key(self) -> ModelKey:
        """(namespace, name)."""
        return (self.namespace, self.name)

    def names(self) -> tuple[str, ...]:
        """Every name clients may put in `model`."""
        return (self.served_name, *(a for a in self.aliases if a != self.served_name))


@dataclass(eq=False)
class ModelRoute:
    """A Model as the router serves it: spec, endpoints by version, the version chooser, held waiters."""

    spec: ModelSpec
    endpoints: dict[str, dict[str, Endpoint]] = field(default_factory=dict)
    """version -> url -> Endpoint."""
    chooser: SmoothWeightedRoundRobin = field(default_factory=SmoothWeightedRoundRobin)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.chooser.set_weights(self.weights())

    def weights(self) -> list[tuple[str, int]]:
        """Version weights: status.traffic, else the stable version alone, else every known version evenly."""
        traffic = [(v, w) for v, w in self.spec.traffic if w > 0]
        if traffic:
            return traffic
        if self.spec.stable:
            return [(self.spec.stable, 1)]
        return [(v, 1) for v in sorted(self.endpoints)]

    def resolve_version(self, pin: str) -> str | None:
        """The version a `X-Tessera-Version` value names (a hash, `stable` or `candidate`), if known."""
        if pin == "stable":
            return self.spec.stable
        if pin == "candidate":
            return self.spec.candidate
        known = {v for v, _ in self.spec.traffic} | set(self.endpoints)
        known.update(v for v in (self.spec.stable, self.spec.candidate) if v)
        return pin if pin in known else None

    def accepting(self, version: str, now: float) -> list[Endpoint]:
        """Endpoints of `version` that take new requests."""
        return [e for e in self.endpoints.get(version, {}).values() if e.accepts(now)]

    def has_capacity(self, now: float) -> bool:
        """Whether any weighted version has an endpoint taking requests."""
        endpoints = self.endpoints
        for version in self.chooser.names():  # the weighted versions, kept in step with `weights()`
            for endpoint in endpoints.get(version, {}).values():
                if endpoint.accepts(now):
                    return True
        return False

    def wake_waiters(self) -> None:
        """Let every held request look again (an endpoint appeared or the weights changed)."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class RoutingTable:
    """Models by key and by every name they answer to, plus their endpoints."""

    def __init__(self) -> None:
        self.models: dict[ModelKey, ModelRoute] = {}
        self._by_name: dict[str, ModelRoute] = {}
        # Endpoint sets per (model, source group): an EndpointSlice, or one routes-file version.
        self._groups: dict[tuple[ModelKey, str], tuple[str, list[EndpointState]]] = {}
        self.listeners: list[Callable[[], None]] = []

    def lookup(self, name: str) -> ModelRoute | None:
        """The Model that answers to `name` (served name or alias)."""
        return self._by_name.get(name)

    def upsert_model(self, spec: ModelSpec) -> None:
        """Add or update a Model; keeps endpoints, counters and the chooser's position."""
        route = self.models.get(spec.key)
        if route is None:
            route = ModelRoute(spec)
            self.models[spec.key] = route
        else:
            route.spec = spec
        self._rebuild_endpoints(spec.key)
        self._reindex()

    def remove_model(self, key: ModelKey) -> None:
        """Forget a Model (its held requests keep waiting until they time out or it comes back)."""
        route = self.models.pop(key, None)
        if route is not None:
            route.wake_waiters()
        self._reindex()

    def set_group(self, model: ModelKey, group: str, version: str, endpoints: Iterable[EndpointState]) -> None:
        """Set the endpoints a source group (an EndpointSlice) reports for one version of a Model."""
        self._groups[(model, group)] = (version, list(endpoints))
        self._rebuild_endpoints(model)

    def remove_group(self, model: ModelKey, group: str) -> None:
        """Drop a source group's endpoints (the EndpointSlice was deleted)."""
        if self._groups.pop((model, group), None) is not None:
            self._rebuild_endpoints(model)

    def replace_groups(self, groups: dict[tuple[ModelKey, str], tuple[str, list[EndpointState]]]) -> None:
        """Replace every group at once (after a full list, or a routes-file reload)."""
        touched = {m for m, _ in self._groups} | {m for m, _ in groups}
        self._groups = dict(groups)
        for model in touched:
            self._rebuild_endpoints(model)

    def replace_models(self, specs: Iterable[ModelSpec]) -> None:
        """Replace every Model at once (after a full list, or a routes-file reload)."""
        specs = list(specs)
        wanted = {s.key for s in specs}
        for key in [k for k in self.models if k not in wanted]:
            self.remove_model(key)
        for spec in specs:
            self.upsert_model(spec)

    def _rebuild_endpoints(self, model: ModelKey) -> None:
        route = self.models.get(model)
        if route is None:
            return
        fresh: dict[str, dict[str, Endpoint]] = {}
        for (key, _group), (version, states) in self._groups.items():
            if key != model:
                continue
            for state in states:
                old = route.endpoints.get(version, {}).get(state.url)
                endpoint = old if old is not None else Endpoint(url=state.url, version=version)
                # The same address may appear in two slices while one is being replaced: any
                # report of readiness wins, any report of termination wins.
                existing = fresh.setdefault(version, {}).get(state.url)
                if existing is None:
                    endpoint.ready, endpoint.serving, endpoint.terminating = (
                        state.ready, state.serving, state.terminating
                    )
                else:
                    endpoint.ready = existing.ready or state.ready
                    endpoint.serving = existing.serving or state.serving
                    endpoint.terminating = existing.terminating or state.terminating
                fresh[version][state.url] = endpoint
        route.endpoints = fresh
        route.chooser.set_weights(route.weights())
        route.wake_waiters()
        for listener in self.listeners:
            listener()

    def _reindex(self) -> None:
        by_name: dict[str, ModelRoute] = {}
        # Served names win over aliases; within each kind the first Model (by key) wins, so a name
        # clash between namespaces resolves the same way on every router replica.
        for alias_pass in (False, True):
            for key in sorted(self.models):
                route = self.models[key]
                names = route.spec.aliases if alias_pass else (route.spec.served_name,)
                for name in names:
                    by_name.setdefault(name, route)
        self._by_name = by_name
        for route in self.models.values():
            route.chooser.set_weights(route.weights())
            route.wake_waiters()

    def all_endpoints(self) -> list[Endpoint]:
        """Every endpoint of every Model (for the metrics scraper)."""
        return [e for r in self.models.values() for eps in r.endpoints.values() for e in eps.values()]
