"""POST /v1/chat/completions: the model's chat template, n, logprobs and server-sent-event streaming."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..engines.types import FinishEvent, PromptEvent, SamplingParams, TokenEvent
from . import sse
from .errors import ApiError
from .generate import cancel_all, collect, merged, submit_all
from .protocol import ChatRequest, check_context, parse_chat
from .responses import chat_logprobs, chat_object, new_id, usage
from .state import STATE_KEY, ServerState
from .validation import read_json, require_model


def render_chat(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids of the conversation in the model's chat template, ending with the assistant's turn."""
    try:
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
    except Exception as exc:  # a template may reject a conversation (e.g. roles out of order)
        raise ApiError(400, f"The chat template rejected the messages: {exc}", param="messages") from exc
    return [int(t) for t in encoded["input_ids"][0].tolist()]


async def handle_chat(request: web.Request) -> web.StreamResponse:
    """The handler."""
    state = request.app[STATE_KEY]
    req = parse_chat(await read_json(request), state.engine.max_batch_size)
    require_model(state, req.common.model)
    prompt_ids = render_chat(state.tokenizer, list(req.messages))
    # Without a limit, a chat answer may use the rest of the context (as vLLM does).
    max_tokens = (
        req.common.max_tokens if req.common.max_tokens is not None else state.max_model_len - len(prompt_ids)
    )
    check_context(len(prompt_ids), max(max_tokens, 1), state.max_model_len)
    c = req.common
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=c.temperature,
        top_p=c.top_p,
        seed=c.seed,
        stop=c.stop,
        n=c.n,
        ignore_eos=c.ignore_eos,
        logprobs=req.top_logprobs if req.logprobs else None,
    )
    streams = submit_all(state.engine, [prompt_ids], params)
    try:
        if c.stream:
            return await _stream(request, state, req, streams)
        return await _whole(state, req, streams)
    finally:
        cancel_all(streams)


async def _whole(state: ServerState, req: ChatRequest, streams: list[Any]) -> web.Response:
    (result,) = await asyncio.gather(collect(streams[0], req.common.n))
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": choice.text},
            "logprobs": chat_logprobs(choice.tokens) if req.logprobs else None,
            "finish_reason": choice.finish_reason,
        }
        for index, choice in enumerate(result.choices)
    ]
    completion_tokens = sum(choice.generated for choice in result.choices)
    body = chat_object(
        new_id("chatcmpl"),
        state.model_name,
        choices,
        usage(result.prompt_tokens, completion_tokens),
        chunk=False,
    )
    return web.json_response(body)


async def _stream(
    request: web.Request, state: ServerState, req: ChatRequest, streams: list[Any]
) -> web.StreamResponse:
    response = await sse.open_stream(request)
    response_id = new_id("chatcmpl")
    prompt_tokens = completion_tokens = 0

    def chunk(index: int, delta: dict[str, Any], logprobs: Any, finish: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return chat_object(response_id, state.model_name, [choice], None, chunk=True)

    async for _, event in merged(streams):
        if isinstance(event, PromptEvent):
            prompt_tokens = event.prompt_tokens
            for index in range(req.common.n):
                await sse.send(response, chunk(index, {"role": "assistant", "content": ""}, None, None))
        elif isinstance(event, TokenEvent):
            if not event.text and not (req.logprobs and event.tokens):
                continue
            logprobs = chat_logprobs(event.tokens) if req.logprobs else None
            await sse.send(response, chunk(event.index, {"content": event.text}, logprobs, None))
        elif isinstance(event, FinishEvent):
            if event.reason == "error":
                await sse.send(response, sse.error_payload(f"generation failed: {event.error}"))
                break
            completion_tokens += event.generated_tokens
            delta = {"content": event.text} if event.text else {}
            await sse.send(response, chunk(event.index, delta, None, event.reason))
    if req.common.include_usage:
        body = chat_object(
            response_id, state.model_name, [], usage(prompt_tokens, completion_tokens), chunk=True
        )
        await sse.send(response, body)
    await sse.done(response)
    return response
