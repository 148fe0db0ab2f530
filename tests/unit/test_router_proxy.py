"""The router over HTTP, in front of fake OpenAI upstreams on loopback: routing, canaries, streams, errors."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, cast

import aiohttp
import pytest

from tessera_runtime.router.core import RouterSettings
from tessera_runtime.router.hold import HoldSettings
from tessera_runtime.router.run import FRONT_ENDS, FrontEnd
from tessera_runtime.router.table import EndpointState
from tessera_runtime.router.testing import FakeUpstream, router_from_routes, serve_router

Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=FRONT_ENDS)
def front_end(request: pytest.FixtureRequest) -> FrontEnd:
    """Each scenario through both HTTP front ends: the lean server and aiohttp."""
    return cast(FrontEnd, request.param)


try:
    import uvloop
except ImportError:  # the router falls back to asyncio's loop too
    LOOPS: dict[str, Runner] = {"asyncio": asyncio.run}
else:
    LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Runner:
    """Each scenario on the standard event loop and on uvloop (what the router runs on)."""
    return LOOPS[request.param]


def _closed_port_url() -> str:
    """A loopback URL on which nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def _post(session: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None,
                path: str = "/v1/completions") -> tuple[int, dict[str, Any], str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(url + path, data=data, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text), response.headers.get("X-Upstream", "")


def test_routes_by_served_name_and_alias_rewriting_only_aliases(run: Runner, front_end: FrontEnd) -> None:
    async def scenario() -> None:
        llama, mistral = FakeUpstream("llama-pod"), FakeUpstream("mistral-pod")
        await llama.start()
        await mistral.start()
        router = router_from_routes({"models": [
            {"name": "llama", "servedModelName": "llama-3", "aliases": ["l3"],
             "versions": [{"version": "v1", "endpoints": [llama.url]}]},
            {"name": "mistral", "namespace": "team", "versions": [{"version": "v1", "endpoints": [mistral.url]}]},
        ]})
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            raw = b'{"model": "llama-3",   "prompt": "keep my spacing"}'
            status, body, upstream = await _post(session, url, raw)
            assert (status, upstream, body["system_fingerprint"]) == (200, "llama-pod", "llama-pod")
            assert llama.last_body == raw  # the served name: forwarded byte for byte
            status, _, upstream = await _post(session, url, {"model": "l3", "prompt": "by alias"})
            assert (status, upstream) == (200, "llama-pod")
            # an alias is rewritten to the served name, the only name the engine answers to
            assert json.loads(llama.last_body) == {"model": "llama-3", "prompt": "by alias"}
            for name, pod in (("llama-3", "llama-pod"), ("mistral", "mistral-pod")):
                status, _, upstream = await _post(session, url, {"model": name, "prompt": "hi"})
                assert (status, upstream) == (200, pod)
            metrics = await (await session.get(url + "/metrics")).text()
            assert 'tessera_router_requests_total{code="200",model="mistral",namespace="team"} 1.0' in metrics
        await llama.stop()
        await mistral.stop()

    run(scenario())


def test_canary_split_90_10_over_1000_requests_and_version_pins(run: Runner, front_end: FrontEnd) -> None:
    async def scenario() -> None:
        stable = [FakeUpstream("stable-0"), FakeUpstream("stable-1")]
        candidate = FakeUpstream("candidate-0")
        for pod in [*stable, candidate]:
            await pod.start()
        router = router_from_routes({"models": [{
            "name": "llama", "stable": "aaa", "candidate": "bbb",
            "versions": [{"version": "aaa", "weight": 90, "endpoints": [p.url for p in stable]},
                         {"version": "bbb", "weight": 10, "endpoints": [candidate.url]}],
        }]})
        seen: Counter[str] = Counter()
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            gate = asyncio.Semaphore(16)

            async def one() -> None:
                async with gate:
                    status, _, upstream = await _post(session, url, {"model": "llama", "prompt": "hi"})
                    assert status == 200
                    seen[upstream] += 1

            await asyncio.gather(*(one() for _ in range(1000)))
            to_candidate = seen["candidate-0"]
            assert abs(to_candidate - 100) <= 20, seen  # within 2 % of the 10 % share
            assert abs(seen["stable-0"] + seen["stable-1"] - 900) <= 20, seen
            assert min(seen["stable-0"], seen["stable-1"]) > 300, seen  # both stable pods share the load
            for pin in ("candidate", "bbb"):
                pinned = [await _post(session, url, {"model": "llama", "prompt": "x"}, {"X-Tessera-Version": pin})
                          for _ in range(5)]
                assert {p[2] for p in pinned} == {"candidate-0"}
            status, body, _ = await _post(session, url, {"model": "llama", "prompt": "x"}, {"X-Tessera-Version": "zzz"})
            assert status == 400 and body["error"]["param"] == "X-Tessera-Version"
        for pod in [*stable, candidate]:
            await pod.stop()

    run(scenario())


def test_connection_refused_before_any_byte_is_retried_on_another_pod(run: Runner, front_end: FrontEnd) -> None:
    async def scenario() -> None:
        live = FakeUpstream("live")
        await live.start()
        dead = _closed_port_url()
        router = router_from_routes({"models": [
            {"name": "m", "versions": [{"version": "v1", "endpoints": [dead, live.url]}]},
            {"name": "gone", "versions": [{"version": "v1", "endpoints": [_closed_port_url()]}]},
        ]})
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            results = [await _post(session, url, {"model": "m", "prompt": "hi"}) for _ in range(10)]
            assert {(status, upstream) for status, _, upstream in results} == {(200, "live")}
            assert live.requests == 10
            status, body, _ = await _post(session, url, {"model": "gone", "prompt": "hi"})
            assert status == 503 and body["error"]["code"] == "upstream_unreachable"
        await live.stop()

    run(scenario())


def test_bad_bodies_and_unknown_models_get_openai_format_errors(run: Runner, front_end: FrontEnd) -> None:
    async def scenario() -> None:
        pod = FakeUpstream("pod")
        await pod.start()
        router = router_from_routes([{"name": "m", "versions": [{"version": "v1", "endpoints": [pod.url]}]}])
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            cases = [
                (b"{not json", 400, None),
                (b"[1, 2]", 400, None),
                (b'{"prompt": "no model"}', 400, "model"),
                (b'{"model": 7, "prompt": "x"}', 400, "model"),
                (b'{"model": "missing", "prompt": "x"}', 404, "model"),
            ]
            for raw, expected, param in cases:
                status, body, _ = await _post(session, url, raw, path="/v1/chat/completions")
                assert status == expected, raw
                assert set(body["error"]) == {"message", "type", "param", "code"}
                assert body["error"]["param"] == param
            _, body, _ = await _post(session, url, b'{"model": "missing"}')
            assert body["error"]["code"] == "model_not_found"
            async with session.get(url + "/v1/files") as response:
                assert response.status == 400 and (await response.json())["error"]["param"] == "model"
            async with session.get(url + "/nowhere") as response:
                assert response.status == 404 and "error" in await response.json()
            assert pod.requests == 0
        await pod.stop()

    run(scenario())


def test_other_v1_paths_pass_through_and_models_are_listed(run: Runner, front_end: FrontEnd) -> None:
    async def scenario() -> None:
        pod = FakeUpstream("pod")
        await pod.start()
        router = router_from_routes([{"name": "m", "servedModelName": "m-1", "aliases": ["mm"],
                                      "versions": [{"version": "v1", "endpoints": [pod.url]}]}])
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            status, body, upstream = await _post(session, url, {"model": "mm", "input": "x"}, path="/v1/embeddings")
            assert (status, upstream, body["upstream"]) == (200, "pod", "pod")
            listing = await (await session.get(url + "/v1/models")).json()
            assert [(m["id"], m["root"]) for m in listing["data"]] == [("m-1", "m-1"), ("mm", "m-1")]
            one = await session.get(url + "/v1/models/mm")
            assert one.status == 200 and (await one.json())["root"] == "m-1"
            assert (await session.get(url + "/v1/models/none")).status == 404
            assert (await session.get(url + "/health")).status == 200
            assert (await session.get(url + "/ready")).status == 200
        await pod.stop()

    run(scenario())


async def _read_until(response: aiohttp.ClientResponse, marker: bytes, buffer: bytearray) -> None:
    while marker not in buffer:
        chunk = await asyncio.wait_for(response.content.readany(), 5)
        assert chunk, f"stream ended before {marker!r}"
        buffer.extend(chunk)


def test_stream_survives_removal_of_another_pod_and_its_own_pods_termination(run: Runner, front_end: FrontEnd) -> None:
    async def scenario() -> None:
        streaming, other, successor = FakeUpstream("a", chunks=4), FakeUpstream("b"), FakeUpstream("c")
        for pod in (streaming, other, successor):
            await pod.start()
        streaming.pause_streams = asyncio.Event()
        router = router_from_routes([{"name": "m", "versions": [{"version": "v1", "endpoints": [streaming.url]}]}],
                                    RouterSettings(hold=HoldSettings(timeout=5)))
        key = ("default", "m")
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            body = json.dumps({"model": "m", "prompt": "hi", "stream": True}).encode()
            async with session.post(url + "/v1/completions", data=body) as response:
                assert response.headers["Content-Type"].startswith("text/event-stream")
                received = bytearray()
                await _read_until(response, b"t0 ", received)  # first chunk arrived, unbuffered
                # Another pod joins and is then scaled down (and its server stopped).
                router.table.set_group(key, "other", "v1", [EndpointState(other.url)])
                router.table.remove_group(key, "other")
                await other.stop()
                # Our own pod starts terminating; a successor is ready.
                router.table.set_group(key, "routes-file/v1", "v1", [
                    EndpointState(streaming.url, ready=False, serving=True, terminating=True)])
                router.table.set_group(key, "successor", "v1", [EndpointState(successor.url)])
                for _ in range(5):  # new requests avoid the terminating pod
                    status, _, upstream = await _post(session, url, {"model": "m", "prompt": "x"})
                    assert (status, upstream) == (200, "c")
                streaming.pause_streams.set()
                await _read_until(response, b"[DONE]", received)
            text = received.decode()
            assert [f"t{i} " in text for i in range(4)] == [True] * 4
            assert streaming.requests == 1
        await streaming.stop()
        await successor.stop()

    run(scenario())


def test_upstream_errors_and_large_bodies_pass_through_and_broken_streams_end_with_an_error_event(run: Runner, front_end: FrontEnd) -> None:
    async def scenario() -> None:
        pod = FakeUpstream("pod", chunks=3)
        await pod.start()
        pod.pause_streams = asyncio.Event()
        router = router_from_routes([{"name": "m", "versions": [{"version": "v1", "endpoints": [pod.url]}]}])
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            for code in (429, 500):  # the pod's own errors reach the client as they are
                status, error, upstream = await _post(session, url, {"model": "m", "prompt": "x", "fake_status": code})
                assert (status, upstream, error["error"]["message"]) == (code, "pod", "fake failure")
            big = json.dumps({"model": "m", "prompt": "x", "fake_size": 3 << 20}).encode()
            async with session.post(url + "/v1/completions", data=big) as response:
                assert response.content_length == 3 << 20 and await response.read() == b"x" * (3 << 20)
            body = json.dumps({"model": "m", "prompt": "hi", "stream": True}).encode()
            async with session.post(url + "/v1/completions", data=body) as response:
                received = bytearray()
                await _read_until(response, b"t0 ", received)
                await pod.stop()  # the pod dies mid-stream
                rest = await asyncio.wait_for(response.content.read(), 10)
            assert b"broke off the stream" in rest
            metrics = await (await session.get(url + "/metrics")).text()
            assert 'tessera_router_errors_total{cause="upstream_broken",model="m",namespace="default"} 1.0' in metrics
            assert 'tessera_router_errors_total{cause="upstream_status",model="m",namespace="default"} 1.0' in metrics

    run(scenario())


def test_session_and_prefix_affinity_keep_requests_on_one_pod(run: Runner, front_end: FrontEnd) -> None:
    async def scenario() -> None:
        pods = [FakeUpstream(f"pod-{i}") for i in range(3)]
        for pod in pods:
            await pod.start()
        router = router_from_routes([{"name": "m", "versions": [{"version": "v1", "endpoints": [p.url for p in pods]}]}])
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            plain = {(await _post(session, url, {"model": "m", "prompt": "hi"}))[2] for _ in range(9)}
            assert len(plain) == 3  # without affinity, idle pods share the requests
            for session_id in ("alice", "bob"):
                seen = {(await _post(session, url, {"model": "m", "prompt": "hi"}, {"X-Session-Id": session_id}))[2]
                        for _ in range(6)}
                assert len(seen) == 1
            system = "You are a careful assistant. " * 12  # a long shared prefix (> 256 characters)
            seen = set()
            for i in range(6):
                chat = {"model": "m", "messages": [{"role": "system", "content": system},
                                                   {"role": "user", "content": f"question {i}"}]}
                seen.add((await _post(session, url, chat, path="/v1/chat/completions"))[2])
            assert len(seen) == 1
        for pod in pods:
            await pod.stop()

    run(scenario())
