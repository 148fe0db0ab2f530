"""OpenAI-format error responses of the router, each with the cause it is counted under."""

from __future__ import annotations

import json


class RouterError(Exception):
    """A failure reported to the client as `{"error": {message, type, param, code}}`.

    `cause` is the label of `tessera_router_errors_total`; it never carries client data.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        cause: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.cause = cause
        self.type = type_
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.close = close
        """Close the connection after answering (the request's body was left unread)."""

    def body(self) -> bytes:
        """The JSON body `{"error": {message, type, param, code}}`."""
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()

    def headers(self) -> list[tuple[str, str]]:
        """Content type, and `Retry-After` (whole seconds, at least 1) when set."""
        headers = [("Content-Type", "application/json")]
        if self.retry_after is not None:
            headers.append(("Retry-After", str(max(1, round(self.retry_after)))))
        return headers


def bad_request(message: str, *, param: str | None = None) -> RouterError:
    """A 400 for a body the router cannot route."""
    return RouterError(400, message, cause="bad_request", param=param, code="invalid_request")


def unknown_model(name: str) -> RouterError:
    """A 404 for a model name that no Model serves (OpenAI's `model_not_found`)."""
    return RouterError(
        404,
        f"The model `{name}` does not exist.",
        cause="unknown_model",
        param="model",
        code="model_not_found",
    )
