"""A small OpenAI-API client for evaluation: bounded concurrency, per-request timeouts, retries.

Only what the task kinds need: prompt log-probabilities (completions with echo), greedy chat answers,
and streamed completions timed token by token.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

# Transient answers worth another try: overload and gateway trouble.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class EndpointError(Exception):
    """A request failed for good (after retries, or with an answer that retrying will not change)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """One side of the comparison."""

    url: str
    """Base URL of the OpenAI API server (with or without the /v1 suffix)."""
    model: str | None = None
    """Name to send in `model`; discovered from GET /v1/models when None."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers (for example X-Tessera-Version to pin a version through the router)."""

    @property
    def api_base(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/v1") else base + "/v1"


@dataclass(frozen=True)
class ClientSettings:
    """How hard to push an endpoint and how patiently."""

    concurrency: int = 4
    """Requests in flight per endpoint."""
    timeout_s: float = 120.0
    """Limit for one request."""
    retries: int = 3
    """Further attempts after a transient failure."""
    backoff_s: float = 0.5
    """First pause between attempts (doubled each time)."""


@dataclass(frozen=True)
class TimedStream:
    """Timings of one streamed completion."""

    ttft_s: float
    """Seconds from sending the request to the first generated text."""
    tpot_s: float | None
    """Mean seconds per output token after the first (None with fewer than two tokens)."""
    output_tokens: int


class OpenAIClient:
    """Talks to one endpoint; use as an async context manager."""

    def __init__(self, endpoint: Endpoint, settings: ClientSettings | None = None) -> None:
        self.endpoint = endpoint
        self.settings = settings or ClientSettings()
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._model = endpoint.model
        # Prompt log-probabilities need no generated token; servers that insist on one get max_tokens 1.
        self._echo_max_tokens = 0

    async def __aenter__(self) -> OpenAIClient:
        self._session = aiohttp.ClientSession(
            headers=self.endpoint.headers,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("OpenAIClient used outside `async with`")
        return self._session

    async def model_name(self) -> str:
        """The model name to send: the configured one, else the first model the server lists."""
        if self._model is None:
            body = await self._request("GET", "/models", None)
            models = body.get("data") or []
            if not models or not isinstance(models[0], dict) or "id" not in models[0]:
                raise EndpointError(f"{self.endpoint.url}: GET /v1/models lists no model")
            self._model = str(models[0]["id"])
        return self._model

    async def prompt_logprobs(self, prompt: str) -> tuple[list[str], list[float | None], list[int]]:
        """Tokens, log-probabilities and character offsets of the prompt (completions with echo)."""
        model = await self.model_name()
        async with self._semaphore:  # read the max_tokens setting only when it is this request's turn
            body = {
                "model": model, "prompt": prompt, "max_tokens": self._echo_max_tokens, "echo": True,
                "logprobs": 1, "temperature": 0.0,
            }  # fmt: skip
            try:
                response = await self._with_retries(lambda: self._once("POST", "/completions", body))
            except EndpointError as error:
                if error.status != 400 or body["max_tokens"] != 0 or "max_tokens" not in str(error):
                    raise
                self._echo_max_tokens = body["max_tokens"] = 1
                response = await self._with_retries(lambda: self._once("POST", "/completions", body))
        choices = response.get("choices") or []
        first = choices[0] if choices and isinstance(choices[0], dict) else {}
        logprobs = first.get("logprobs")
        if not str(first.get("text", "")).startswith(prompt):
            raise NoPromptLogprobs(
                f"{self.endpoint.url} did not echo the prompt, so it gives no prompt log-probabilities"
            )
        if not isinstance(logprobs, dict) or not logprobs.get("token_logprobs"):
            raise NoPromptLogprobs(
                f"{self.endpoint.url} returned no prompt log-probabilities (echo with logprobs)"
            )
        tokens = [str(t) for t in logprobs.get("tokens") or []]
        values = [None if v is None else float(v) for v in logprobs["token_logprobs"]]
        offsets = logprobs.get("text_offset")
        if not isinstance(offsets, list) or len(offsets) != len(tokens):
            offsets, position = [], 0
            for token in tokens:
                offsets.append(position)
                position += len(token)
        if len(tokens) != len(values):
            raise NoPromptLogprobs(f"{self.endpoint.url} returned mismatched tokens and log-probabilities")
        return tokens, values, [int(o) for o in offsets]

    async def chat(self, prompt: str, max_tokens: int, seed: int = 0) -> str:
        """The greedy (temperature 0) answer to a single user message."""
        body = {
            "model": await self.model_name(), "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0.0, "seed": seed,
        }  # fmt: skip
        response = await self._request("POST", "/chat/completions", body)
        try:
            content = response["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError) as error:
            raise EndpointError(f"{self.endpoint.url}: malformed chat completion: {error}") from error
        return str(content or "")

    async def timed_stream(self, prompt: str, max_tokens: int) -> TimedStream:
        """Send one streamed completion and time its first token and the tokens after it."""
        body = {
            "model": await self.model_name(), "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True},
        }  # fmt: skip
        async with self._semaphore:
            return await self._with_retries(lambda: self._timed_once(body))

    async def _timed_once(self, body: dict[str, Any]) -> TimedStream:
        start = time.perf_counter()
        first: float | None = None
        last = start
        chunks = 0
        usage_tokens: int | None = None
        async with self.session.post(self.endpoint.api_base + "/completions", json=body) as response:
            await _raise_for_status(response, self.endpoint.url)
            async for raw in response.content:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                event = json.loads(payload)
                if "error" in event:
                    raise EndpointError(f"{self.endpoint.url}: stream error: {event['error']}")
                if isinstance(event.get("usage"), dict):
                    usage_tokens = int(event["usage"].get("completion_tokens") or 0)
                for choice in event.get("choices") or []:
                    if choice.get("text"):
                        now = time.perf_counter()
                        first = now if first is None else first
                        last = now
                        chunks += 1
        if first is None:
            raise EndpointError(f"{self.endpoint.url}: the stream produced no text")
        tokens = usage_tokens if usage_tokens else chunks
        tpot = (last - first) / (tokens - 1) if tokens > 1 else None
        return TimedStream(first - start, tpot, tokens)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        async with self._semaphore:
            return await self._with_retries(lambda: self._once(method, path, body))

    async def _once(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        async with self.session.request(method, self.endpoint.api_base + path, json=body) as response:
            await _raise_for_status(response, self.endpoint.url)
            data = await response.json(content_type=None)
        if not isinstance(data, dict):
            raise EndpointError(f"{self.endpoint.url}{path}: expected a JSON object")
        return data

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        pause = self.settings.backoff_s
        for remaining in range(self.settings.retries, -1, -1):
            try:
                return await attempt()
            except _Transient as error:
                if remaining == 0:
                    raise EndpointError(str(error)) from error
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as error:
                if remaining == 0:
                    raise EndpointError(f"{self.endpoint.url}: {type(error).__name__}: {error}") from error
            await asyncio.sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")


class NoPromptLogprobs(EndpointError):
    """The server does not return log-probabilities of the prompt, so likelihood tasks cannot be scored."""


class _Transient(Exception):
    """An answer worth retrying."""


async def _raise_for_status(response: aiohttp.ClientResponse, url: str) -> None:
    if response.status < 400:
        return
    text = (await response.text())[:500]
    message = f"{url}{response.url.path}: HTTP {response.status}: {text}"
    if response.status in _RETRY_STATUSES:
        raise _Transient(message)
    raise EndpointError(message, response.status)
