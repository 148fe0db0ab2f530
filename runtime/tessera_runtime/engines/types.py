"""What goes into the engine (a prompt and its sampling parameters) and what comes out (events)."""

from __future__ import annotations

from dataclasses import dataclass, field


class EngineError(Exception):
    """Base class of the errors the engine reports to the server."""


class QueueFullError(EngineError):
    """The waiting queue is at its limit; the client should retry after `retry_after` seconds."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(f"the server's waiting queue is full ({waiting} requests); retry later")
        self.waiting = waiting
        self.retry_after = retry_after


class EngineClosedError(EngineError):
    """The engine is shutting down and accepts no new requests."""


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples. `n` sequences share the prompt; each has its own random stream."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    # Number of alternatives to report per generated token (0 = only the chosen token); None = no logprobs.
    logprobs: int | None = None
    # Same for the prompt tokens (completions with echo); None = not computed.
    prompt_logprobs: int | None = None
    ignore_eos: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    """One token with its log-probability and, when asked, the most likely alternatives."""

    token_id: int
    text: str
    logprob: float | None
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class PromptEvent:
    """Sent once, after the prompt was processed."""

    prompt_tokens: int
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class TokenEvent:
    """New output of one sequence (`index` among the request's n). `text` may lag tokens (stop strings)."""

    index: int
    text: str
    tokens: tuple[TokenLogprob, ...]


@dataclass(frozen=True)
class FinishEvent:
    """One sequence finished: `reason` is stop, length, abort or error."""

    index: int
    reason: str
    text: str = ""
    generated_tokens: int = 0
    error: str | None = None


Event = PromptEvent | TokenEvent | FinishEvent


@dataclass
class RequestTiming:
    """Timestamps (time.monotonic) used for metrics."""

    arrival: float
    scheduled: float | None = None
    first_token: float | None = None
    last_token: dict[int, float] = field(default_factory=dict)
