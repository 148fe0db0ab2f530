"""config.json files of well-known public architectures, shipped for examples, docs and tests.

The files hold only the architecture hyper-parameters the planner reads (and that the models publish).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


def known_config_names() -> list[str]:
    """Names of the shipped configs (file names without .json)."""
    return sorted(p.stem for p in _HERE.glob("*.json"))


def known_config_path(name: str) -> Path:
    """Path of a shipped config (for `tessera plan --model-config`)."""
    path = _HERE / f"{name.removesuffix('.json')}.json"
    if not path.is_file():
        raise KeyError(f"no known config {name!r}; known: {', '.join(known_config_names())}")
    return path


def known_config(name: str) -> dict[str, Any]:
    """A shipped config as a dict."""
    data = json.loads(known_config_path(name).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{name}: not a JSON object")
    return data
