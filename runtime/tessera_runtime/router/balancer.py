"""Endpoint choice within one version: affinity on a consistent-hash ring, bounded by load; else least loaded.

Affinity keys are a session id (header `X-Session-Id`) or the first characters of a long prompt:
requests that share them land on the same pod, whose KV cache already holds the prefix (vLLM's
prefix caching then skips that prefill). The ring has virtual nodes per endpoint, so an endpoint
joining or leaving moves only its own share of keys. Affinity yields to load: when the ring's pod is
busier than a bound (a multiple of the mean load plus some slack, or its KV cache nearly full), the
request goes to the least loaded pod instead ("consistent hashing with bounded loads").
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .table import Endpoint

# Added to the score of a pod whose KV cache is nearly full: it gets requests only when all are.
_FULL_CACHE_PENALTY = 1000.0


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """A consistent-hash ring over endpoint URLs."""

    def __init__(self, urls: Sequence[str], virtual_nodes: int = 64) -> None:
        points = sorted((_hash64(f"{url}#{i}"), url) for url in urls for i in range(virtual_nodes))
        self._hashes = [h for h, _ in points]
        self._urls = [u for _, u in points]

    def owner(self, key: str) -> str | None:
        """The URL owning `key`: the first point clockwise from the key's hash."""
        if not self._hashes:
            return None
        index = bisect.bisect(self._hashes, _hash64(key))
        return self._urls[index % len(self._urls)]


@dataclass(frozen=True)
class BalancerSettings:
    """Knobs of endpoint choice."""

    prefix_chars: int = 256
    """Prompt characters hashed for prefix affinity; prompts shorter than this get none (0 disables)."""
    overload_factor: float = 1.5
    """An affinity target may carry up to this multiple of the mean load ..."""
    overload_slack: float = 4.0
    """... or this many requests, whichever is larger, before affinity yields."""
    kv_cache_limit: float = 0.9
    """KV-cache usage at which a pod counts as full."""
    virtual_nodes: int = 64
    """Ring points per endpoint."""


class EndpointPicker:
    """Picks one endpoint among those of a version that accept requests."""

    def __init__(self, settings: BalancerSettings | None = None) -> None:
        self.settings = settings or BalancerSettings()
        self._rings: dict[tuple[str, ...], HashRing] = {}
        self._turn = 0

    def _ring(self, endpoints: Sequence[Endpoint]) -> HashRing:
        urls = tuple(sorted(e.url for e in endpoints))
        ring = self._rings.get(urls)
        if ring is None:
            if len(self._rings) > 256:  # endpoint sets churn with scaling; keep the cache bounded
                self._rings.clear()
            ring = HashRing(urls, self.settings.virtual_nodes)
            self._rings[urls] = ring
        return ring

    def _score(self, endpoint: Endpoint) -> float:
        score = endpoint.load() + endpoint.kv_cache_usage
        if endpoint.kv_cache_usage >= self.settings.kv_cache_limit:
            score += _FULL_CACHE_PENALTY
        return score

    def least_loaded(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        """The endpoint with the lowest score; ties rotate, so idle pods share sequential traffic."""
        count = len(endpoints)
        self._turn = (self._turn + 1) % count if count else 0
        best = endpoints[self._turn]
        best_score = self._score(best)
        for offset in range(1, count):
            candidate = endpoints[(self._turn + offset) % count]
            score = self._score(candidate)
            if score < best_score:
                best, best_score = candidate, score
        return best

    def overloaded(self, target: Endpoint, endpoints: Sequence[Endpoint]) -> bool:
        """Whether `target` is too busy to take one more request for affinity's sake."""
        if target.kv_cache_usage >= self.settings.kv_cache_limit:
            return True
        total = sum(e.load() for e in endpoints) + 1
        bound = max(self.settings.overload_slack, self.settings.overload_factor * total / len(endpoints))
        return target.load() + 1 > bound

    def pick(self, endpoints: Sequence[Endpoint], affinity_key: str | None = None) -> Endpoint:
        """One endpoint of `endpoints` (which must not be empty)."""
        if len(endpoints) == 1:
            return endpoints[0]
        if affinity_key is not None:
            owner = self._ring(endpoints).owner(affinity_key)
            for endpoint in endpoints:
                if endpoint.url == owner:
                    if not self.overloaded(endpoint, endpoints):
                        return endpoint
                    break
        return self.least_loaded(endpoints)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_prefix(body: dict[str, Any], chars: int) -> str | None:
    """The first `chars` characters of the prompt (completions) or of the messages (chat), if that long."""
    if chars <= 0:
        return None
    parts: list[str] = []
    length = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            text = f"{message.get('role', '')}:{_text_of(message.get('content'))}\n"
            parts.append(text)
            length += len(text)
            if length >= chars:
                break
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt:
            prompt = prompt[0]
            if isinstance(prompt, int):  # token ids: a prefix of the id sequence
                prompt = ",".join(str(t) for t in body["prompt"][:chars])
            elif isinstance(prompt, list):
                prompt = ",".join(str(t) for t in prompt[:chars])
        if isinstance(prompt, str):
            parts.append(prompt)
            length = len(prompt)
    if length < chars:
        return None
    return "".join(parts)[:chars]
