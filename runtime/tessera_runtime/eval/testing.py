"""Fake OpenAI servers for testing the evaluation gate without a model.

A fake "model" is a few rules: which prompts it knows the answer to (and how often it gets them
right), how surprised it is by plain text, what it answers in chat, and how fast it streams. Every
behaviour is deterministic (stable hashes, no randomness), so verdicts are reproducible.

In tests: `async with FakeServer(FakeModel(...)) as server: server.url`. As a process (for example a
pod in an end-to-end test of a server without prompt log-probabilities):
`python -m tessera_runtime.eval.testing --port 8000 --no-prompt-logprobs`.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_TOKEN = re.compile(r"\s*\S+")


def stable_fraction(text: str) -> float:
    """A number in [0, 1) fixed by the text."""
    return (zlib.crc32(text.encode()) % 10_000) / 10_000.0


@dataclass
class FakeModel:
    """How one fake endpoint behaves."""

    name: str = "fake-model"
    answers: dict[str, str] = field(default_factory=dict)
    """Prompt -> correct answer (multiple choice continuations and chat answers)."""
    skill: float = 0.9
    """Fraction of known prompts it answers correctly (chosen by a stable hash of the prompt)."""
    nll_per_token: float = 2.0
    """Surprise on ordinary text tokens (perplexity = e ** this)."""
    prompt_logprobs: bool = True
    """Whether completions honour echo; False is a server that ignores it (no prompt text, no prompt
    log-probabilities: only the generated tokens, none at all with max_tokens 0)."""
    chat_rule: Callable[[str], str] | None = None
    """Answer for chat prompts it has no answer for."""
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    transient_failures: int = 0
    """The first N requests get HTTP 503."""
    needs_a_token: bool = False
    """Refuse max_tokens 0 (like servers that always generate), so the client must fall back to 1."""
    hang_s: float = 0.0
    """Every request waits this long before anything happens."""
    requests: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    """Headers of the last request."""

    def masters(self, prompt: str) -> bool:
        return stable_fraction("skill:" + prompt) < self.skill

    def token_logprob(self, text: str, start: int, token: str) -> float:
        """Log-probability of the token at `start` in `text`."""
        for prompt, answer in self.answers.items():
            if text.startswith(prompt) and start >= len(prompt):
                continuation = text[len(prompt) :].strip()
                if self.masters(prompt) and continuation == answer:
                    return -0.05
                return -(1.0 + stable_fraction(text + str(start)) * 2.0)
        return -(self.nll_per_token + (stable_fraction(token + str(start)) - 0.5) * 0.2)

    def chat_answer(self, prompt: str) -> str:
        if prompt in self.answers:
            return self.answers[prompt] if self.masters(prompt) else "I am not sure."
        if self.chat_rule is not None:
            return self.chat_rule(prompt)
        return "Yes."


class FakeServer:
    """A running fake; use `async with FakeServer(model) as server` and `server.url`."""

    def __init__(self, model: FakeModel) -> None:
        self.model = model
        self._runner: web.AppRunner | None = None
        self.url = ""

    def app(self) -> web.Application:
        """The aiohttp application (OpenAI routes plus /health and /ready)."""
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/health", self._ok)
        app.router.add_get("/ready", self._ok)
        return app

    async def __aenter__(self) -> FakeServer:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _gate(self, request: web.Request) -> web.Response | None:
        self.model.requests += 1
        self.model.headers = dict(request.headers)
        if self.model.hang_s:
            await asyncio.sleep(self.model.hang_s)
        if self.model.requests <= self.model.transient_failures:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return None

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": True, "model": self.model.name})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model.name, "object": "model"}]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        body: dict[str, Any] = await request.json()
        if body.get("model") != self.model.name:
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        prompt = str(body["prompt"])
        if body.get("stream"):
            return await self._stream(request, int(body.get("max_tokens", 16)))
        max_tokens = int(body.get("max_tokens", 16))
        if max_tokens == 0 and self.model.needs_a_token:
            return web.json_response({"error": {"message": "max_tokens must be at least 1"}}, status=400)
        generated = " ok" if max_tokens else ""
        echo = bool(body.get("echo")) and self.model.prompt_logprobs
        logprobs = None
        if body.get("logprobs") is not None:
            text = prompt + generated if echo else generated
            tokens: list[str] = []
            values: list[float | None] = []
            offsets: list[int] = []
            for match in _TOKEN.finditer(text):
                tokens.append(match.group())
                offsets.append(match.start())
                values.append(self.model.token_logprob(prompt, match.start(), match.group()))
            if echo and values:
                values[0] = None  # the first prompt token has nothing before it
            logprobs = {
                "tokens": tokens,
                "token_logprobs": values,
                "top_logprobs": None,
                "text_offset": offsets,
            }
        text_out = prompt + generated if echo else generated
        choice = {"index": 0, "text": text_out, "logprobs": logprobs, "finish_reason": "length"}
        return web.json_response({"object": "text_completion", "model": self.model.name, "choices": [choice]})

    async def _stream(self, request: web.Request, max_tokens: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(self.model.ttft_s)
        for index in range(max_tokens):
            if index:
                await asyncio.sleep(self.model.tpot_s)
            chunk = {"choices": [{"index": 0, "text": f" w{index}", "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"choices": [], "usage": {"completion_tokens": max_tokens}}
        await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response

    async def _chat(self, request: web.Request) -> web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        body: dict[str, Any] = await request.json()
        prompt = body["messages"][-1]["content"]
        message = {"role": "assistant", "content": self.model.chat_answer(prompt)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response({"object": "chat.completion", "model": self.model.name, "choices": [choice]})


def builtin_answers() -> dict[str, str]:
    """Prompt -> answer for every built-in multiple-choice and exact-match item."""
    from .data import builtin_text, parse_items

    answers: dict[str, str] = {}
    for name in ("facts", "arithmetic"):
        for item in parse_items(builtin_text(name), name):
            if item.prompt and item.answer:
                answers[item.prompt] = item.answer
    return answers


def main(argv: list[str] | None = None) -> None:
    """Serve one fake model until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description="A fake OpenAI server for evaluation tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", default="fake-model", help="the served model name")
    parser.add_argument("--skill", type=float, default=0.9, help="fraction of built-in items answered right")
    parser.add_argument("--nll", type=float, default=2.0, help="surprise per token of plain text")
    parser.add_argument("--no-prompt-logprobs", action="store_true", help="ignore echo for log-probabilities")
    options = parser.parse_args(argv)
    model = FakeModel(
        name=options.name, answers=builtin_answers(), skill=options.skill, nll_per_token=options.nll,
        prompt_logprobs=not options.no_prompt_logprobs,
    )  # fmt: skip
    web.run_app(FakeServer(model).app(), host=options.host, port=options.port, print=None)


if __name__ == "__main__":
    main()
