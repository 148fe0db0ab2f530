"""Optional API keys: each key may use a set of Models at a bounded request rate.

Keys live in Secrets labelled `tessera.dev/api-key=true` (or in the routes file). The router keeps
only their SHA-256 digests; a key is never logged, exported as a metric or echoed in an error.

Secret layout (data values are base64, as always in Secrets):
  data.key         the key itself (required)
  data.models      comma- or newline-separated Model names, served names or aliases; empty or `*`: all
  data.rateLimit   `N/s`, `N/m` or `N/h` (a bare number means per minute); absent: unlimited
The annotations `tessera.dev/models` and `tessera.dev/rate-limit` may be used instead of the last two.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RouterError
from .table import ModelSpec

API_KEY_LABEL = "tessera.dev/api-key"
MODELS_ANNOTATION = "tessera.dev/models"
RATE_ANNOTATION = "tessera.dev/rate-limit"

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")
_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` per `period` seconds (also the largest burst)."""

    requests: float
    period: float


def parse_rate(text: str | None) -> RateLimit | None:
    """`10/s`, `60/m`, `1000/h` or `60` (per minute); None or empty: no limit."""
    if text is None or not text.strip():
        return None
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"rate limit {text!r} is not N/s, N/m or N/h")
    requests = float(match.group(1))
    if requests <= 0:
        raise ValueError("a rate limit must be positive")
    return RateLimit(requests, _PERIODS[match.group(2) or "m"])


def parse_models(text: str | Iterable[str] | None) -> frozenset[str] | None:
    """A model list (comma/newline separated, or a list); None, empty or `*` mean every model."""
    if text is None:
        return None
    items = re.split(r"[,\s]+", text) if isinstance(text, str) else list(text)
    names = frozenset(i.strip() for i in items if i.strip())
    return None if not names or "*" in names else names


def digest(key: str) -> bytes:
    """The SHA-256 digest the key is stored and looked up by."""
    return hashlib.sha256(key.encode()).digest()


@dataclass
class ApiKey:
    """One key's policy; `name` says where it came from (a Secret), for operators, never the key."""

    name: str
    digest: bytes
    models: frozenset[str] | None = None
    rate: RateLimit | None = None

    def allows(self, spec: ModelSpec) -> bool:
        """Whether the key may use this Model (by Model name, served name or alias)."""
        if self.models is None:
            return True
        return spec.name in self.models or any(n in self.models for n in spec.names())


@dataclass
class TokenBucket:
    """Refills `rate.requests` tokens per `rate.period`; holds at most `rate.requests`."""

    rate: RateLimit
    tokens: float = field(default=-1.0)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.rate.requests

    def take(self, now: float) -> float:
        """Take one token: 0 on success, else the seconds until one is available."""
        refill = self.rate.requests / self.rate.period
        self.tokens = min(self.rate.requests, self.tokens + (now - self.stamp) * refill)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / refill


def key_from_secret(secret: Mapping[str, Any]) -> ApiKey | None:
    """An ApiKey from a Secret (as a dict in API form); None when it holds no key."""
    metadata = secret.get("metadata") or {}
    data = secret.get("data") or {}
    annotations = metadata.get("annotations") or {}

    def field_text(name: str) -> str | None:
        raw = data.get(name)
        return base64.b64decode(raw).decode().strip() if raw else None

    key = field_text("key")
    if not key:
        return None
    models = field_text("models")
    rate = field_text("rateLimit")
    return ApiKey(
        name=f"{metadata.get('namespace', '')}/{metadata.get('name', '')}",
        digest=digest(key),
        models=parse_models(models if models is not None else annotations.get(MODELS_ANNOTATION)),
        rate=parse_rate(rate if rate is not None else annotations.get(RATE_ANNOTATION)),
    )


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: `Authorization: Bearer KEY`, or `api-key` / `x-api-key`."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("api-key") or headers.get("x-api-key") or None


class KeyStore:
    """The keys in force, grouped by source (a Secret, the routes file), with their rate buckets."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._groups: dict[str, list[ApiKey]] = {}
        self._by_digest: dict[bytes, ApiKey] = {}
        self._buckets: dict[bytes, TokenBucket] = {}

    def set_group(self, group: str, keys: Iterable[ApiKey]) -> None:
        """Set the keys one source reports (a Secret's key, every key of the routes file)."""
        self._groups[group] = list(keys)
        self._reindex()

    def remove_group(self, group: str) -> None:
        """Forget a source's keys (the Secret was deleted)."""
        if self._groups.pop(group, None) is not None:
            self._reindex()

    def replace(self, groups: Mapping[str, Iterable[ApiKey]]) -> None:
        """Replace every group (after a full list)."""
        self._groups = {g: list(k) for g, k in groups.items()}
        self._reindex()

    def _reindex(self) -> None:
        self._by_digest = {k.digest: k for keys in self._groups.values() for k in keys}
        # Buckets survive reloads (a key edited elsewhere keeps its spent tokens) but not removal.
        fresh: dict[bytes, TokenBucket] = {}
        for d, key in self._by_digest.items():
            if key.rate is None:
                continue
            old = self._buckets.get(d)
            fresh[d] = old if old is not None and old.rate == key.rate else TokenBucket(key.rate)
        self._buckets = fresh

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, headers: Mapping[str, str]) -> ApiKey | None:
        """The request's key (None when keys are off); 401 without a valid one."""
        if not self.enabled:
            return None
        presented = presented_key(headers)
        if presented is None:
            raise RouterError(401, "An API key is required: send `Authorization: Bearer <key>`.",
                              cause="unauthorized", type_="authentication_error", code="missing_api_key")
        key = self._by_digest.get(digest(presented))
        if key is None:
            raise RouterError(401, "The API key is not valid.", cause="unauthorized",
                              type_="authentication_error", code="invalid_api_key")
        return key

    def authorize(self, key: ApiKey | None, spec: ModelSpec, asked_as: str) -> None:
        """403 when the key may not use the Model; 429 when it is over its rate."""
        if key is None:
            return
        if not key.allows(spec):
            raise RouterError(403, f"This API key may not use the model `{asked_as}`.", cause="forbidden",
                              type_="permission_error", param="model", code="model_not_allowed")
        bucket = self._buckets.get(key.digest)
        if bucket is not None:
            wait = bucket.take(time.monotonic())
            if wait > 0:
                raise RouterError(429, "This API key is over its request rate.", cause="rate_limited",
                                  type_="rate_limit_error", code="rate_limit_exceeded",
                                  retry_after=math.ceil(wait))
