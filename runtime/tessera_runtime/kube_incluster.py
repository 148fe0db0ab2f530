"""In-cluster Kubernetes credentials, wherever the pod's ServiceAccount token is mounted.

In a container the token lives at /var/run/secrets/kubernetes.io/serviceaccount. On Tessera's local
development node pods are plain processes that cannot use that path; the node agent materialises
the token, CA and namespace in the pod's folder and says where in $TESSERA_SERVICEACCOUNT_DIR.
Every in-cluster client of Tessera (operator, router, evaluator) loads its credentials here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

STANDARD_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def service_account_dir() -> Path:
    """Folder holding token, ca.crt and namespace."""
    return Path(os.environ.get("TESSERA_SERVICEACCOUNT_DIR") or STANDARD_DIR)


def load_incluster_config(configuration: Any = None) -> None:
    """Like kubernetes.config.load_incluster_config, honouring $TESSERA_SERVICEACCOUNT_DIR.

    Raises kubernetes.config.ConfigException when not in a cluster.
    """
    from kubernetes.config import incluster_config

    folder = service_account_dir()
    loader_class: Any = incluster_config.InClusterConfigLoader  # untyped in the client library
    loader = loader_class(token_filename=str(folder / "token"), cert_filename=str(folder / "ca.crt"))
    loader.load_and_set(configuration)


def in_cluster() -> bool:
    """Whether this process runs in a pod with a ServiceAccount token."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (service_account_dir() / "token").exists()


def pod_namespace(default: str = "default") -> str:
    """The pod's namespace from the mounted ServiceAccount files."""
    path = service_account_dir() / "namespace"
    return path.read_text().strip() if path.exists() else default
