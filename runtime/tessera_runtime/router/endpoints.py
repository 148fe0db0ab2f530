"""The router's HTTP surface, independent of the server: which path does what.

`dispatch` answers every request: the OpenAI API (`/v1/models`, `/v1/models/{name}`, and every other
`/v1/*` path routed by its model through `Router.handle`), `/health`, `/ready` and `/metrics`.
Both front ends (the lean server and aiohttp) call it with their own `Exchange`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import unquote

from .core import Router
from .errors import RouterError, unknown_model
from .exchange import Exchange, respond_error
from .metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

_CREATED = int(time.time())
_JSON = [("Content-Type", "application/json")]
_READ_METHODS = frozenset(("GET", "HEAD"))
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
_MODELS_PREFIX = "/v1/models/"


def _model_entries(router: Router, exchange: Exchange) -> list[dict[str, Any]]:
    key = router.keys.authenticate(exchange.headers)
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


def _json(exchange: Exchange, document: Any, status: int = 200) -> None:
    exchange.respond(status, json.dumps(document).encode(), _JSON)


def _small_endpoint(router: Router, exchange: Exchange, path: str) -> None:
    """GET /health, /ready, /metrics, /v1/models and /v1/models/{name}."""
    if path == "/health":
        _json(exchange, {"status": "ok"})
    elif path == "/ready":
        ready = router.ready()
        _json(exchange, {"ready": ready, "models": len(router.table.models)}, 200 if ready else 503)
    elif path == "/metrics":
        exchange.respond(200, router.metrics.exposition(), [("Content-Type", CONTENT_TYPE)])
    elif path == "/v1/models":
        _json(exchange, {"object": "list", "data": _model_entries(router, exchange)})
    else:
        name = unquote(path[len(_MODELS_PREFIX):])
        for entry in _model_entries(router, exchange):
            if entry["id"] == name:
                _json(exchange, entry)
                return
        raise unknown_model(name)


def _is_small_endpoint(path: str) -> bool:
    return path in ("/health", "/ready", "/metrics", "/v1/models") or (
        path.startswith(_MODELS_PREFIX) and "/" not in path[len(_MODELS_PREFIX):] and len(path) > len(_MODELS_PREFIX))


async def dispatch(router: Router, exchange: Exchange) -> None:
    """Answer one request; every failure is answered in OpenAI's error format."""
    method = exchange.method
    path = exchange.path.partition("?")[0]
    try:
        if path.startswith("/v1/") and not (method in _READ_METHODS and _is_small_endpoint(path)):
            # Completions, chat and any other /v1/* request naming a model.
            await router.handle(exchange, model_from_body=method in _BODY_METHODS)
        elif _is_small_endpoint(path):
            if method not in _READ_METHODS:
                raise RouterError(405, f"Method {method} is not allowed on {path}.", cause="bad_request",
                                  code="method_not_allowed")
            _small_endpoint(router, exchange, path)
        else:
            raise RouterError(404, f"No route for {path}.", cause="bad_request", code="not_found")
    except RouterError as exc:
        respond_error(exchange, exc)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", method, path)
        error = RouterError(500, "Internal error in the router.", cause="internal", type_="server_error")
        respond_error(exchange, error)
