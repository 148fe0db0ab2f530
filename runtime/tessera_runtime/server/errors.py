"""OpenAI-format errors: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ApiError(Exception):
    """An error the client caused (or must react to), reported in OpenAI's format."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.close = close  # close the connection after answering (the body was left unread)

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        """The aiohttp response."""
        response = web.json_response(self.body(), status=self.status, headers=self.headers, dumps=json.dumps)
        if self.close:
            response.force_close()
        return response


def bad_param(param: str, message: str) -> ApiError:
    """A 400 naming the offending parameter."""
    return ApiError(400, message, param=param, code="invalid_parameter")
