"""Waiting for a starting cluster: health endpoints, Ready nodes, the controller-manager's first work."""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessera_operator.devcluster.profile import Profile, fake_nodes


class ComponentDiedError(RuntimeError):
    """A component exited while the cluster was starting; the message ends with its log's tail."""

    def __init__(self, component: str, log: Path) -> None:
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        super().__init__(f"{component} exited while starting; last lines of {log}:\n{tail}")
        self.component = component


def wait_for(what: str, ready: Callable[[], bool], timeout: float, check: Callable[[], None]) -> None:
    """Poll `ready` until true; `check` raises if waiting is pointless (a process died)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        check()
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def http_ok(url: str) -> bool:
    """GET over plain HTTP answers 200."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
    try:
        connection.request("GET", parts.path or "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def https_ok(url: str, ca: Path, cert: Path, key: Path) -> bool:
    """GET over HTTPS with a client certificate answers 200."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=3, context=context
    )
    try:
        connection.request("GET", parts.path or "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class RestClient:
    """A minimal synchronous client for the few calls `up`/`status` make.

    The `kubernetes` package takes seconds to import and to build its models; starting a
    cluster should not wait for that.
    """

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        parts = urllib.parse.urlsplit(server)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.context = ssl.create_default_context(cafile=str(ca))
        self.context.load_cert_chain(str(cert), str(key))

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        """One call: (HTTP status, decoded JSON body or None)."""
        connection = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else None
        finally:
            connection.close()

    def checked(self, method: str, path: str, body: Any = None, allowed: tuple[int, ...] = ()) -> Any:
        """Like request, raising unless the status is 2xx or in `allowed`."""
        status, answer = self.request(method, path, body)
        if status >= 300 and status not in allowed:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise RuntimeError(f"{method} {path}: {status} {message}")
        return answer


def create_nodes(rest: RestClient, profile: Profile) -> None:
    """Create the profile's fake nodes (kwok then marks them Ready); existing ones are kept."""
    for node in fake_nodes(profile):
        rest.checked("POST", "/api/v1/nodes", node, allowed=(409,))


def node_is_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def wait_nodes_ready(rest: RestClient, expected: int, timeout: float, check: Callable[[], None]) -> None:
    """Wait until at least `expected` nodes report Ready."""

    def enough() -> bool:
        nodes = rest.checked("GET", "/api/v1/nodes")["items"]
        return sum(1 for node in nodes if node_is_ready(node)) >= expected

    wait_for(f"{expected} Ready nodes", enough, timeout, check)


def wait_service_account(
    rest: RestClient, namespace: str, name: str, timeout: float, check: Callable[[], None]
) -> None:
    """Wait until the controller-manager has created a ServiceAccount (proof that it works)."""
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
    wait_for(
        f"ServiceAccount {namespace}/{name}", lambda: rest.request("GET", path)[0] == 200, timeout, check
    )
