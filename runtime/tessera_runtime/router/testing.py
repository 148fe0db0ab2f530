"""A minimal fake OpenAI server, for the router's tests and benchmark (never for serving).

It answers /v1/completions and /v1/chat/completions at once (or streams a few SSE chunks), names
itself in `system_fingerprint` and the `X-Upstream` header so a test can tell who answered, and
exposes vLLM-named load gauges on /metrics. A stream can be made to pause after its first chunk
until the test releases it, to act out pods going away mid-stream.

Run alone as `python -m tessera_runtime.router.testing --port N` (the benchmark's upstream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .core import Router, RouterSettings
from .file_source import apply_routes, parse_routes
from .hold import MarkDemand
from .run import FrontEnd, start_front_end


class FakeUpstream:
    """One fake pod."""

    def __init__(self, name: str, *, chunks: int = 3, waiting: float = 0.0, kv_cache_usage: float = 0.0,
                 shutdown_timeout: float = 0.5) -> None:
        self.name = name
        self.shutdown_timeout = shutdown_timeout
        self.chunks = chunks
        self.waiting = waiting
        self.kv_cache_usage = kv_cache_usage
        self.requests = 0
        self.last_headers: dict[str, str] = {}
        self.last_body: bytes = b""
        self.pause_streams: asyncio.Event | None = None
        """When set to an Event, streams stop after the first chunk until it is set."""
        self.stream_started = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._static_reply = b""

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/chat/completions", self._generate)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen (port 0: any free port); returns the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=self.shutdown_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.url = bound_url(self._runner, host)
        return self.url

    async def stop(self) -> None:
        """Stop listening; in-flight responses get `shutdown_timeout` seconds, then are cut off."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _metrics(self, request: web.Request) -> web.Response:
        text = (
            f'vllm:num_requests_waiting{{model_name="{self.name}",engine="0"}} {self.waiting}\n'
            f'vllm:kv_cache_usage_perc{{model_name="{self.name}",engine="0"}} {self.kv_cache_usage}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def _embeddings(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.json()
        return web.json_response({"object": "list", "model": body.get("model"), "upstream": self.name,
                                  "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 1.0]}]},
                                 headers={"X-Upstream": self.name})

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        raw = await request.read()
        self.last_body = raw
        self.last_headers = dict(request.headers)
        body: dict[str, Any] = json.loads(raw)
        chat = request.path.endswith("/chat/completions")
        model = body.get("model", "")
        if "fake_size" in body:  # a large sized answer, streamed through rather than read whole
            return web.Response(body=b"x" * int(body["fake_size"]), content_type="application/octet-stream",
                                headers={"X-Upstream": self.name})
        if "fake_status" in body:  # lets a test see an upstream error pass through
            error = {"error": {"message": "fake failure", "type": "server_error", "param": None, "code": None}}
            return web.json_response(error, status=int(body["fake_status"]), headers={"X-Upstream": self.name})
        if not body.get("stream"):
            if chat:
                choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": f"hello from {self.name}"}}
            else:
                choice = {"index": 0, "finish_reason": "stop", "text": f"hello from {self.name}", "logprobs": None}
            reply = {
                "id": "cmpl-fake", "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": model, "system_fingerprint": self.name,
                "choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
            }
            return web.Response(body=json.dumps(reply).encode(), content_type="application/json",
                                headers={"X-Upstream": self.name})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Upstream": self.name})
        await response.prepare(request)
        chunks = int(body.get("fake_chunks", self.chunks))  # a long, slow stream on request
        delay = float(body.get("fake_delay", 0.0))
        for index in range(chunks):
            if index and delay:
                await asyncio.sleep(delay)
            if chat:
                delta: dict[str, Any] = {"index": 0, "delta": {"content": f"t{index} "}, "finish_reason": None}
            else:
                delta = {"index": 0, "text": f"t{index} ", "finish_reason": None, "logprobs": None}
            chunk = {"id": "cmpl-fake", "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": int(time.time()), "model": model, "system_fingerprint": self.name,
                     "choices": [delta]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if index == 0:
                self.stream_started.set()
                if self.pause_streams is not None:
                    await self.pause_streams.wait()
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def bound_url(runner: web.BaseRunner, host: str = "127.0.0.1") -> str:
    """The base URL of a runner's started site (port 0 picks a free port)."""
    port = runner.addresses[0][1]
    return f"http://{host}:{port}"


def router_from_routes(document: Any, settings: RouterSettings | None = None,
                       mark_demand: MarkDemand | None = None) -> Router:
    """A router whose table holds a routes-file document (see `file_source`)."""
    router = Router(settings, mark_demand)
    apply_routes(parse_routes(document), router.table, router.keys)
    return router


@asynccontextmanager
async def serve_router(router: Router, *, server: FrontEnd = "lean", shutdown_timeout: float = 5.0
                       ) -> AsyncIterator[str]:
    """Serve `router` with the given front end on a free loopback port for the duration; yields its base URL."""
    front_end = await start_front_end(router, server, "127.0.0.1", 0, shutdown_timeout)
    try:
        yield f"http://127.0.0.1:{front_end.port}"
    finally:
        await front_end.stop()


@dataclass
class RawAnswer:
    """What a raw HTTP exchange got back: status (0 when none), headers (lower-case names), body, whether
    the server closed the connection, and how long the exchange took."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool
    seconds: float

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def assert_openai_error(answer: RawAnswer, status: int, code: str | None = None) -> dict[str, Any]:
    """Check that `answer` is an OpenAI-format JSON error with this status (and code); return the error."""
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def _split_url(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
    return host, int(port or 80)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return status, headers, await reader.readexactly(length)


async def raw_request(url: str, parts: list[bytes], interval: float = 0.0, limit: float = 30.0) -> RawAnswer:
    """Send `parts` over a fresh connection, `interval` seconds apart (a slow client), for at most
    `limit` seconds; then read one response. Stops sending early when the server answers or closes."""
    host, port = _split_url(url)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    answer: asyncio.Task[tuple[int, dict[str, str], bytes]] = asyncio.ensure_future(_read_answer(reader))
    try:
        for index, part in enumerate(parts):
            if answer.done() or time.monotonic() - started > limit:
                break
            if index and interval:
                await asyncio.wait({answer}, timeout=interval)
                if answer.done():
                    break
            try:
                writer.write(part)
                await writer.drain()
            except ConnectionError:
                break
        try:
            status, headers, body = await asyncio.wait_for(answer, max(0.1, limit - (time.monotonic() - started)))
        except (asyncio.IncompleteReadError, ConnectionError):
            return RawAnswer(0, {}, b"", True, time.monotonic() - started)
        except TimeoutError:
            return RawAnswer(0, {}, b"", False, time.monotonic() - started)
        try:
            rest = await asyncio.wait_for(reader.read(1), 5.0)
            closed = rest == b""
        except TimeoutError:
            closed = False
        except ConnectionError:
            closed = True
        return RawAnswer(status, headers, body, closed, time.monotonic() - started)
    finally:
        answer.cancel()
        writer.close()


def post_head(path: str, length: int | None, extra: str = "") -> bytes:
    """An HTTP/1.1 POST head for `path` (with `Content-Length` when given, else chunked)."""
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{size}{extra}\r\n"
            ).encode()


async def _main(host: str, port: int, name: str | None, shutdown_timeout: float) -> None:
    upstream = FakeUpstream(name or f"fake-{port}", shutdown_timeout=shutdown_timeout)
    url = await upstream.start(host=host, port=port)
    print(url, flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await upstream.stop()  # as a model server does: stop listening, let in-flight streams finish


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default=None, help="what it answers in X-Upstream (default: fake-PORT)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0, help="seconds streams get after SIGTERM")
    args = parser.parse_args()
    main = _main(args.host, args.port, args.name, args.shutdown_timeout)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
