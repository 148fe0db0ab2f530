"""A small asyncio client for the few REST calls a kubelet-like agent makes (JSON dicts in and out)."""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

MERGE_PATCH = "application/merge-patch+json"
Json = dict[str, Any]


class ApiError(RuntimeError):
    """A non-success answer from the apiserver."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        message = body
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(body).get("message", body)
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message


class KubeClient:
    """Authenticates with a client certificate; one aiohttp session for the agent's life."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        self.server = server.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=str(ca))
        self._ssl.load_cert_chain(str(cert), str(key))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=20)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Json | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Json:
        """One call; raises ApiError on a non-2xx answer."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self._http().request(
            method,
            self.server + path,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            if response.status >= 300:
                raise ApiError(response.status, method, path, text)
            return json.loads(text) if text else {}

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Json | None:
        """GET, or None when the object does not exist."""
        try:
            return await self.request("GET", path, params=params)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def create(self, path: str, body: Json) -> Json:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Json) -> Json:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: Json | None = None) -> None:
        """DELETE; an object already gone counts as deleted."""
        try:
            await self.request("DELETE", path, body=body)
        except ApiError as error:
            if error.status != 404:
                raise

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Json]:
        """Stream watch events ({"type", "object"}) until the server ends the watch."""
        query = dict(params) | {"watch": "1", "allowWatchBookmarks": "true"}
        async with self._http().get(
            self.server + path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=330),
        ) as response:
            if response.status >= 300:
                raise ApiError(response.status, "WATCH", path, await response.text())
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)
