"""The aiohttp application: OpenAI routes, health and readiness, metrics, and error handling."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .chat import handle_chat
from .completions import handle_completions
from .errors import ApiError
from .state import STATE_KEY, ServerState

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Report every failure in OpenAI's error format; refuse generation while loading or draining."""
    state = request.app[STATE_KEY]
    generating = request.method == "POST" and request.path.startswith("/v1/")
    try:
        if generating:
            if state.draining:
                raise ApiError(
                    503, "The server is shutting down.", type_="service_unavailable", code="shutting_down"
                )
            if not state.ready:
                raise ApiError(
                    503, "The model is still loading.", type_="service_unavailable", code="not_ready"
                )
            state.enter()
            try:
                return await handler(request)
            finally:
                state.leave()
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return ApiError(
            exc.status, exc.reason, type_="invalid_request_error", code=str(exc.status)
        ).response()
    except (ConnectionResetError, BrokenPipeError):
        raise
    except Exception as exc:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return ApiError(500, f"Internal server error: {exc}", type_="server_error").response()


async def handle_models(request: web.Request) -> web.Response:
    """GET /v1/models: the one served model."""
    state = request.app[STATE_KEY]
    model = {
        "id": state.model_name,
        "object": "model",
        "created": state.created,
        "owned_by": "tessera",
        "root": state.model_name,
        "max_model_len": state.max_model_len or None,
    }
    return web.json_response({"object": "list", "data": [model]})


async def handle_health(request: web.Request) -> web.Response:
    """GET /health: liveness (the process and its event loop answer)."""
    return web.json_response({"status": "ok"})


async def handle_ready(request: web.Request) -> web.Response:
    """GET /ready: 200 once the model is loaded and warmed up, 503 before that and while draining."""
    state = request.app[STATE_KEY]
    ready = state.ready and not state.draining
    body = {"ready": ready, "draining": state.draining, "model": state.model_name}
    return web.json_response(body, status=200 if ready else 503)


async def handle_metrics(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus exposition (vLLM's names)."""
    state = request.app[STATE_KEY]
    engine = state.loaded_engine
    if engine is not None:
        state.metrics.set_scheduler_state(engine.num_running, engine.num_waiting, engine.kv_cache_usage())
    payload, content_type = state.metrics.render()
    response = web.Response(body=payload)
    response.headers["Content-Type"] = content_type
    return response


def create_app(state: ServerState) -> web.Application:
    """The application for one served model."""
    app = web.Application(middlewares=[openai_errors], client_max_size=state.limits.max_body_bytes)
    app[STATE_KEY] = state
    app.router.add_get("/v1/models", handle_models)
    app.router.add_post("/v1/completions", handle_completions)
    app.router.add_post("/v1/chat/completions", handle_chat)
    app.router.add_get("/health", handle_health)
    app.router.add_get("/ready", handle_ready)
    app.router.add_get("/metrics", handle_metrics)
    return app
