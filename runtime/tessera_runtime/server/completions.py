"""POST /v1/completions: text or token-id prompts, n, logprobs, echo (prompt log-probabilities), streaming."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..engines.types import FinishEvent, PromptEvent, SamplingParams, TokenEvent
from . import sse
from .generate import cancel_all, collect, merged, submit_all
from .protocol import CompletionRequest, check_context, parse_completion
from .responses import CompletionLogprobs, completion_object, new_id, usage
from .state import STATE_KEY, ServerState
from .validation import read_json, require_model


def _sampling(req: CompletionRequest, max_tokens: int) -> SamplingParams:
    c = req.common
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=c.temperature,
        top_p=c.top_p,
        seed=c.seed,
        stop=c.stop,
        n=c.n,
        ignore_eos=c.ignore_eos,
        logprobs=req.logprobs,
        prompt_logprobs=req.logprobs if req.echo and req.logprobs is not None else None,
    )


async def handle_completions(request: web.Request) -> web.StreamResponse:
    """The handler."""
    state = request.app[STATE_KEY]
    req = parse_completion(await read_json(request), state.engine.max_batch_size)
    require_model(state, req.common.model)
    tokenizer = state.tokenizer
    prompt_ids = [list(p) if isinstance(p, tuple) else list(tokenizer.encode(p)) for p in req.prompts]
    max_tokens = req.common.max_tokens if req.common.max_tokens is not None else 16
    for ids in prompt_ids:
        check_context(len(ids), max_tokens, state.max_model_len)
    prompt_texts = [p if isinstance(p, str) else str(tokenizer.decode(list(p))) for p in req.prompts]
    streams = submit_all(state.engine, prompt_ids, _sampling(req, max_tokens))
    try:
        if req.common.stream:
            return await _stream(request, state, req, streams, prompt_texts)
        return await _whole(state, req, streams, prompt_texts)
    finally:
        cancel_all(streams)


async def _whole(
    state: ServerState, req: CompletionRequest, streams: list[Any], prompt_texts: list[str]
) -> web.Response:
    results = await asyncio.gather(*(collect(s, req.common.n) for s in streams))
    choices: list[dict[str, Any]] = []
    prompt_total = completion_total = 0
    for position, result in enumerate(results):
        prompt_total += result.prompt_tokens
        for index, choice in enumerate(result.choices):
            completion_total += choice.generated
            text = choice.text
            logprobs = None
            if req.logprobs is not None:
                lp = CompletionLogprobs()
                if req.echo and result.prompt_logprobs is not None:
                    lp.extend(result.prompt_logprobs, with_top=req.logprobs > 0)
                lp.extend(choice.tokens, with_top=req.logprobs > 0)
                logprobs = lp.as_dict()
            if req.echo:
                text = prompt_texts[position] + text
            choices.append(
                {
                    "index": position * req.common.n + index,
                    "text": text,
                    "logprobs": logprobs,
                    "finish_reason": choice.finish_reason,
                }
            )
    body = completion_object(new_id("cmpl"), state.model_name, choices, usage(prompt_total, completion_total))
    return web.json_response(body)


async def _stream(
    request: web.Request,
    state: ServerState,
    req: CompletionRequest,
    streams: list[Any],
    prompt_texts: list[str],
) -> web.StreamResponse:
    response = await sse.open_stream(request)
    response_id = new_id("cmpl")
    n = req.common.n
    prompt_total = completion_total = 0
    with_top = bool(req.logprobs)

    def chunk(choice_index: int, text: str, logprobs: Any, finish: str | None) -> dict[str, Any]:
        return completion_object(
            response_id,
            state.model_name,
            [{"index": choice_index, "text": text, "logprobs": logprobs, "finish_reason": finish}],
            None,
        )

    async for position, event in merged(streams):
        if isinstance(event, PromptEvent):
            prompt_total += event.prompt_tokens
            if req.echo:
                for index in range(n):
                    logprobs = None
                    if req.logprobs is not None and event.prompt_logprobs is not None:
                        lp = CompletionLogprobs()
                        lp.extend(event.prompt_logprobs, with_top)
                        logprobs = lp.as_dict()
                    await sse.send(
                        response, chunk(position * n + index, prompt_texts[position], logprobs, None)
                    )
        elif isinstance(event, TokenEvent):
            if not event.text and not (req.logprobs is not None and event.tokens):
                continue
            logprobs = None
            if req.logprobs is not None:
                lp = CompletionLogprobs()
                lp.extend(event.tokens, with_top)
                logprobs = lp.as_dict()
            await sse.send(response, chunk(position * n + event.index, event.text, logprobs, None))
        elif isinstance(event, FinishEvent):
            if event.reason == "error":
                await sse.send(response, sse.error_payload(f"generation failed: {event.error}"))
                break
            completion_total += event.generated_tokens
            await sse.send(response, chunk(position * n + event.index, event.text, None, event.reason))
    if req.common.include_usage:
        await sse.send(
            response,
            completion_object(response_id, state.model_name, [], usage(prompt_total, completion_total)),
        )
    await sse.done(response)
    return response
