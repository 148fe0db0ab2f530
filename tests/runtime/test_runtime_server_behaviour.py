"""Server behaviour under load and at the edges: queue limits, disconnects, metrics, health and readiness."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

import aiohttp
import pytest
from runtime_server import MODEL_NAME, SESSION_BATCH, SESSION_QUEUE, ServerProcess

from tessera_runtime.metrics import REQUIRED_METRIC_NAMES, parse_exposition

pytestmark = pytest.mark.model

LONG = {
    "model": MODEL_NAME,
    "prompt": "Tell me a long story:",
    "max_tokens": 4000,
    "ignore_eos": True,
    "stream": True,
}


def _gauge(server: ServerProcess, name: str) -> float:
    return parse_exposition(server.metrics()).get(name, 0.0)


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


async def _open_stream(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    """Start a long streamed completion and wait for its first event."""
    response = await session.post(url + "/v1/completions", json=LONG)
    assert response.status == 200
    await response.content.readline()
    return response


def test_health_and_readiness(server: ServerProcess) -> None:
    assert server.get("/health")[0] == 200
    status, body = server.get("/ready")
    assert status == 200 and json.loads(body)["ready"] is True


def test_metrics_use_vllm_names_and_move(server: ServerProcess, openai_client) -> None:  # type: ignore[no-untyped-def]
    text = server.metrics()
    for name in REQUIRED_METRIC_NAMES:
        series = rf'^{re.escape(name)}(_count)?{{[^}}]*model_name="{MODEL_NAME}"'
        assert re.search(series, text, re.MULTILINE), f"{name} with model_name missing"
    assert 'finished_reason="length"' in text
    assert "tessera_model_load_seconds" in text
    before = parse_exposition(text)
    response = openai_client.completions.create(
        model=MODEL_NAME, prompt="Metrics are", max_tokens=5, extra_body={"ignore_eos": True}
    )
    after = parse_exposition(server.metrics())
    assert (
        after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"] == response.usage.prompt_tokens
    )
    assert after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] == 5
    assert (
        after["vllm:time_to_first_token_seconds_count"]
        == before["vllm:time_to_first_token_seconds_count"] + 1
    )
    assert (
        after["vllm:inter_token_latency_seconds_count"]
        == before["vllm:inter_token_latency_seconds_count"] + 4
    )
    assert (
        after["vllm:e2e_request_latency_seconds_count"]
        == before["vllm:e2e_request_latency_seconds_count"] + 1
    )
    assert after["vllm:request_success_total"] == before["vllm:request_success_total"] + 1
    assert after["tessera_model_load_seconds"] > 0


def test_full_queue_answers_429_with_retry_after_and_disconnects_free_slots(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            # Fill every batch row, then the waiting queue.
            running = [await _open_stream(session, server.base_url) for _ in range(SESSION_BATCH)]
            waiting = [
                asyncio.create_task(session.post(server.base_url + "/v1/completions", json=LONG))
                for _ in range(SESSION_QUEUE)
            ]
            await asyncio.to_thread(
                _wait_for, lambda: _gauge(server, "vllm:num_requests_waiting") == SESSION_QUEUE
            )
            assert _gauge(server, "vllm:num_requests_running") == SESSION_BATCH
            async with session.post(
                server.base_url + "/v1/completions", json={**LONG, "stream": False}
            ) as refused:
                assert refused.status == 429
                assert int(refused.headers["Retry-After"]) >= 1
                body = await refused.json()
                assert body["error"]["type"] == "rate_limit_error"
            # Clients going away free their rows and queue places at once.
            aborted_before = _gauge(server, "vllm:request_success_total")
            for response in running:
                response.close()
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            await asyncio.to_thread(
                _wait_for,
                lambda: (
                    _gauge(server, "vllm:num_requests_running") == 0
                    and _gauge(server, "vllm:num_requests_waiting") == 0
                ),
                15.0,
            )
            assert _gauge(server, "vllm:request_success_total") >= aborted_before + SESSION_BATCH

    asyncio.run(scenario())


def test_disconnect_of_a_non_streaming_request_frees_its_slot(server: ServerProcess) -> None:
    async def scenario() -> None:
        body = {**LONG, "stream": False}
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with pytest.raises(asyncio.TimeoutError):
                await session.post(server.base_url + "/v1/completions", json=body)
        await asyncio.to_thread(_wait_for, lambda: _gauge(server, "vllm:num_requests_running") == 0, 15.0)

    asyncio.run(scenario())
    text = server.metrics()
    assert 'finished_reason="abort"' in text
    assert parse_exposition(text)["vllm:num_requests_running"] == 0


def test_concurrent_requests_share_the_batch(server: ServerProcess) -> None:
    """Requests that arrive while others run are decoded together (the running gauge sees them all)."""

    async def scenario() -> int:
        async with aiohttp.ClientSession() as session:
            streams = [await _open_stream(session, server.base_url) for _ in range(3)]
            seen = int(_gauge(server, "vllm:num_requests_running"))
            for response in streams:
                response.close()
        return seen

    assert asyncio.run(scenario()) == 3
    _wait_for(lambda: _gauge(server, "vllm:num_requests_running") == 0, 15.0)
