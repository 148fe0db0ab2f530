"""Server-sent events for streamed responses: `data: {json}` lines, ending with `data: [DONE]`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


async def open_stream(request: web.Request) -> web.StreamResponse:
    """Start an event stream response."""
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    await response.prepare(request)
    return response


async def send(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    """Write one event."""
    await response.write(b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")


async def done(response: web.StreamResponse) -> None:
    """Write the terminal `[DONE]` event and end the response."""
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()


def error_payload(message: str, type_: str = "server_error", code: str | None = None) -> dict[str, Any]:
    """An error event inside a stream (the status line was already sent)."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}
