"""A small JSON client of the Kubernetes API: get, list, server-side apply, merge patch, delete, create.

Built on the official client's configuration (kubeconfig or in-cluster service account, token
refresh, TLS) and its generic request path, so any kind, including CRDs, is one `Resource` away.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tessera_runtime.kube_incluster import load_incluster_config

from .errors import KubeError, NotFound, Unavailable, from_response
from .resources import Resource, resource_of

Json = dict[str, Any]
FIELD_MANAGER = "tessera-operator"
REQUEST_TIMEOUT = (5.0, 30.0)


class _NoDiscovery:
    """The dynamic client's discovery, switched off: every path here is known, so no startup requests."""

    def __init__(self, client: Any, cache_file: Any) -> None:
        self.client = client


def load_api_client(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> k8s_client.ApiClient:
    """An API client: an explicit kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = k8s_client.Configuration()
        load_incluster_config(configuration)
        return k8s_client.ApiClient(configuration)
    api_client: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(path) if path else None, context=context
    )
    return api_client


# Characters YAML forbids or reads as line breaks (JSON escapes those below U+0020 already).
_YAML_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def apply_body(obj: Json) -> str:
    """An apply patch as the apiserver's YAML decoder reads it.

    JSON is YAML, except that JSON's surrogate-pair escapes (how `json.dumps` writes an emoji) are
    refused by YAML: characters are written as themselves instead, escaping only those YAML forbids.
    """
    text = json.dumps(obj, ensure_ascii=False)
    return _YAML_UNPRINTABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


class Kube:
    """JSON in, JSON out; failures raise the typed errors of `errors`."""

    def __init__(self, api_client: k8s_client.ApiClient, field_manager: str = FIELD_MANAGER) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self._dynamic = DynamicClient(api_client, discoverer=_NoDiscovery)  # type: ignore[no-untyped-call]

    @staticmethod
    def from_kubeconfig(kubeconfig: str | Path | None = None) -> Kube:
        """A client for a kubeconfig file (None: the usual lookup, see load_api_client)."""
        return Kube(load_api_client(kubeconfig))

    def _raw(self, method: str, path: str, body: Any = None, **params: Any) -> bytes:
        try:
            response = self._dynamic.request(
                method, path, body=body, serialize=False, _request_timeout=REQUEST_TIMEOUT, **params
            )
        except ApiException as error:
            raise from_response(int(error.status or 0), str(error.reason or ""), error.body) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise Unavailable(0, "Unreachable", str(error)) from error
        data: bytes = response.data or b""
        return data

    def _request(self, method: str, path: str, body: Any = None, **params: Any) -> Json:
        data = self._raw(method, path, body, **params)
        if not data:
            return {}
        parsed: Json = json.loads(data)
        return parsed

    def get_text(self, path: str) -> str:
        """GET a non-JSON endpoint of the apiserver (e.g. /metrics)."""
        return self._raw("get", path, header_params={"Accept": "text/plain"}).decode(errors="replace")

    def get(self, resource: Resource, namespace: str | None, name: str) -> Json | None:
        """The object, or None when it does not exist."""
        try:
            return self._request("get", resource.path(namespace, name))
        except NotFound:
            return None

    def list(self, resource: Resource, namespace: str | None = None, label_selector: str | None = None) -> list[Json]:
        """Objects of a kind in a namespace (all namespaces when None), filtered by labels."""
        result = self._request("get", resource.path(namespace), label_selector=label_selector)
        items: list[Json] = result.get("items", [])
        for item in items:  # list items come without apiVersion/kind
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return items

    def apply(self, obj: Json, force: bool = True) -> Json:
        """Server-side apply under this client's field manager (force: take over fields from others)."""
        resource = resource_of(obj)
        meta = obj["metadata"]
        return self._request(
            "patch", resource.path(meta.get("namespace"), meta["name"]), body=apply_body(obj),
            content_type="application/apply-patch+yaml", field_manager=self.field_manager,
            force_conflicts=force,
        )

    def merge_patch(
        self, resource: Resource, namespace: str | None, name: str, patch: Json, subresource: str | None = None
    ) -> Json:
        """A JSON merge patch (e.g. of the status subresource)."""
        return self._request(
            "patch", resource.path(namespace, name, subresource), body=patch,
            content_type="application/merge-patch+json", field_manager=self.field_manager,
        )

    def create(self, resource: Resource, namespace: str | None, obj: Json) -> Json:
        """Create an object."""
        return self._request("post", resource.path(namespace), body=obj, field_manager=self.field_manager)

    def delete(self, resource: Resource, namespace: str | None, name: str, uid: str | None = None) -> bool:
        """Delete in the background (dependents follow); False when it was already gone.

        With `uid`, deletes only that incarnation of the object (never a newer one with the same name).
        """
        body: Json = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._request("delete", resource.path(namespace, name), body=body)
        except NotFound:
            return False
        except KubeError as error:
            if error.status == 409 and uid:  # the precondition failed: a different object now has the name
                return False
            raise
        return True
