"""What defines a version of a Model, and its short stable hash.

A version is the hash of everything that, when changed, needs new pods with new weights or a new
engine configuration: the source (uri, revision, format, file), the engine (name, image, args, env)
and the placement. Everything else (replicas, autoscaling bounds, SLO, rollout policy, aliases)
changes without a new version, so it never restarts pods.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tessera_operator.api.v1alpha1 import ModelSource, ModelSpec

VERSION_HASH_LENGTH = 10


def _drop_empty(value: Any) -> Any:
    """Remove None, empty lists and empty maps, recursively.

    A field added to the API later with an empty default must not change every existing hash (which
    would roll out every Model on an operator upgrade).
    """
    if isinstance(value, Mapping):
        cleaned = {str(k): _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_drop_empty(item) for item in value]
    return value


def version_defining_fields(spec: ModelSpec) -> dict[str, Any]:
    """The part of a spec that defines a version, in its wire (camelCase) form."""
    source = spec.source
    fields: dict[str, Any] = _drop_empty(
        {
            "source": {
                "uri": source.uri,
                "revision": source.revision,
                "format": source.format,
                "file": source.file,
            },
            "engine": spec.engine.to_api(),
            "placement": spec.placement.to_api(),
        }
    )
    return fields


def _digest(payload: Any, length: int) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def version_hash(spec: ModelSpec | Mapping[str, Any]) -> str:
    """Short stable hash (10 hex characters) of what defines a version of the Model.

    Accepts the typed spec or its wire form (a dict as the apiserver stores it).
    """
    typed = spec if isinstance(spec, ModelSpec) else ModelSpec.model_validate(spec)
    return _digest(version_defining_fields(typed), VERSION_HASH_LENGTH)


def weights_cache_key(source: ModelSource) -> str:
    """Folder name of a source's weights in a shared cache volume: versions with the same weights share it."""
    return "w-" + _digest({"uri": source.uri, "revision": source.revision, "file": source.file}, 16)
