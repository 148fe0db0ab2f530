"""Self-contained kubeconfig files (certificates embedded, so a copy works anywhere on this machine)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render_kubeconfig(name: str, server: str, ca: Path, cert: Path, key: Path) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one current context, all called `name`."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [
            {"name": name, "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}}
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, name: str, server: str, ca: Path, cert: Path, key: Path) -> Path:
    """Write a kubeconfig (mode 0600) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(render_kubeconfig(name, server, ca, cert, key), sort_keys=False))
    path.chmod(0o600)
    return path
