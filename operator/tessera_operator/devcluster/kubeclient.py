"""The official `kubernetes` client for a cluster's kubeconfig (tests and tools; slow to import)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import config as k8s_config


@contextlib.contextmanager
def api_client(kubeconfig: Path) -> Iterator[k8s.ApiClient]:
    """A Kubernetes API client for a kubeconfig file, closed afterwards."""
    api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]
