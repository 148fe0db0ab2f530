"""Submit prompts to the engine and gather their events, for whole responses and for streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from ..engines.stream import RequestStream
from ..engines.transformers_engine import TransformersEngine
from ..engines.types import (
    EngineClosedError,
    Event,
    FinishEvent,
    PromptEvent,
    QueueFullError,
    SamplingParams,
    TokenEvent,
    TokenLogprob,
)
from .errors import ApiError
from .responses import ChoiceState


def submit_all(
    engine: TransformersEngine, prompts: Sequence[Sequence[int]], params: SamplingParams
) -> list[RequestStream]:
    """Submit every prompt or none: on refusal, the ones already queued are cancelled."""
    streams: list[RequestStream] = []
    try:
        for ids in prompts:
            streams.append(engine.submit(ids, params))
    except QueueFullError as exc:
        for stream in streams:
            stream.cancel()
        raise ApiError(
            429,
            str(exc),
            type_="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    except EngineClosedError as exc:
        for stream in streams:
            stream.cancel()
        raise ApiError(
            503, "the server is shutting down", type_="service_unavailable", code="shutting_down"
        ) from exc
    return streams


@dataclass
class PromptResult:
    """Everything one prompt produced: its token count, prompt logprobs and the n choices."""

    prompt_tokens: int = 0
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None
    choices: list[ChoiceState] = field(default_factory=list)


def raise_on_error(event: FinishEvent) -> None:
    if event.reason == "error":
        raise ApiError(500, f"generation failed: {event.error}", type_="server_error", code="engine_error")


async def collect(stream: RequestStream, n: int) -> PromptResult:
    """Wait for a whole request and accumulate its choices."""
    result = PromptResult(choices=[ChoiceState() for _ in range(n)])
    async for event in stream:
        if isinstance(event, PromptEvent):
            result.prompt_tokens = event.prompt_tokens
            result.prompt_logprobs = event.prompt_logprobs
        elif isinstance(event, TokenEvent):
            choice = result.choices[event.index]
            choice.text += event.text
            choice.tokens.extend(event.tokens)
        else:
            raise_on_error(event)
            choice = result.choices[event.index]
            choice.text += event.text
            choice.finish_reason = event.reason
            choice.generated = event.generated_tokens
    return result


async def merged(streams: Sequence[RequestStream]) -> AsyncIterator[tuple[int, Event]]:
    """Events of several requests as they come, tagged with the request's position."""
    if len(streams) == 1:
        async for event in streams[0]:
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Event] | None] = asyncio.Queue()

    async def pump(position: int, stream: RequestStream) -> None:
        try:
            async for event in stream:
                await queue.put((position, event))
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(tasks)
    try:
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
                continue
            yield item
    finally:
        for task in tasks:
            task.cancel()


def cancel_all(streams: Sequence[RequestStream]) -> None:
    """Free the batch slots of every unfinished request (client gone, or an error)."""
    for stream in streams:
        stream.cancel()
