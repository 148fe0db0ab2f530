"""The router's HTTP surface: the OpenAI API for every Model, health, readiness and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .core import Router
from .errors import RouterError, unknown_model
from .metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

ROUTER_KEY: web.AppKey[Router] = web.AppKey("router", Router)
_CREATED = int(time.time())

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure, including aiohttp's own 404/405, in OpenAI's error format."""
    try:
        return await handler(request)
    except RouterError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return RouterError(exc.status, exc.reason, cause="bad_request", code=str(exc.status)).response()
    except (ConnectionError, TimeoutError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return RouterError(500, "Internal error in the router.", cause="internal", type_="server_error").response()


def _model_entries(router: Router, request: web.Request) -> list[dict[str, Any]]:
    key = router.keys.authenticate(request.headers)
    entries: list[dict[str, Any]] = []
    for model_key in sorted(router.table.models):
        spec = router.table.models[model_key].spec
        if key is not None and not key.allows(spec):
            continue
        for name in spec.names():
            if router.table.lookup(name) is not router.table.models[model_key]:
                continue  # a name another Model answers to
            entries.append({"id": name, "object": "model", "created": _CREATED, "owned_by": spec.namespace,
                            "root": spec.served_name})
    return entries


async def handle_models(request: web.Request) -> web.Response:
    """GET /v1/models: every served name and alias (those the caller's key may use)."""
    router = request.app[ROUTER_KEY]
    return web.json_response({"object": "list", "data": _model_entries(router, request)})


async def handle_model(request: web.Request) -> web.Response:
    """GET /v1/models/{name}: one model entry, or a 404 in OpenAI's format."""
    router = request.app[ROUTER_KEY]
    name = request.match_info["name"]
    for entry in _model_entries(router, request):
        if entry["id"] == name:
            return web.json_response(entry)
    raise unknown_model(name)


async def handle_inference(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions, /v1/chat/completions and any other /v1/* request naming a model."""
    return await request.app[ROUTER_KEY].handle(request, model_from_body=request.method in ("POST", "PUT", "PATCH"))


async def handle_health(request: web.Request) -> web.Response:
    """GET /health: liveness."""
    return web.json_response({"status": "ok"})


async def handle_ready(request: web.Request) -> web.Response:
    """GET /ready: 200 once every source (watches or routes file) has delivered its first state."""
    router = request.app[ROUTER_KEY]
    ready = router.ready()
    body = {"ready": ready, "models": len(router.table.models)}
    return web.json_response(body, status=200 if ready else 503)


async def handle_metrics(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus exposition."""
    body = request.app[ROUTER_KEY].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def build_runner(router: Router, shutdown_timeout: float) -> web.AppRunner:
    """An AppRunner for `router`'s app that applies its request-head timeout; no access log."""
    return web.AppRunner(build_app(router), access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout,
                         **router.settings.limits.runner_options())


def build_app(router: Router) -> web.Application:
    """The aiohttp application around `router` (its session opens and closes with the app)."""
    app = web.Application(middlewares=[openai_errors], client_max_size=router.settings.limits.max_body_bytes)
    app[ROUTER_KEY] = router

    async def lifecycle(app: web.Application) -> Any:
        await router.start()
        yield
        await router.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/health", handle_health)
    app.router.add_get("/ready", handle_ready)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/v1/models", handle_models)
    app.router.add_get("/v1/models/{name}", handle_model)
    app.router.add_post("/v1/completions", handle_inference)
    app.router.add_post("/v1/chat/completions", handle_inference)
    app.router.add_route("*", "/v1/{tail:.*}", handle_inference)
    return app
