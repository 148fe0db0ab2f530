"""Request-level checks shared by the endpoints: the JSON body and the model name."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..request_limits import BodyRefused, read_body
from .errors import ApiError
from .state import STATE_KEY, ServerState


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    state = request.app[STATE_KEY]
    try:
        raw = await read_body(request, state.limits)
    except BodyRefused as exc:
        raise ApiError(exc.status, exc.message, code=exc.code, close=True) from None
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def require_model(state: ServerState, model: str) -> None:
    """404 unless `model` is the served model's name."""
    if model != state.model_name:
        raise ApiError(
            404,
            f"The model `{model}` does not exist. This server serves `{state.model_name}`.",
            param="model",
            code="model_not_found",
        )
