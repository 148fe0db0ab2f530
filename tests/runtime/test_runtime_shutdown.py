"""Graceful shutdown: on SIGTERM readiness turns false, new requests get 503, streams in flight finish."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from runtime_server import MODEL_NAME, ServerProcess, start_server

pytestmark = [pytest.mark.model, pytest.mark.slow]


def _stream_lines(
    server: ServerProcess, body: dict[str, object], first_event: threading.Event, out: list[str]
) -> None:
    request = urllib.request.Request(
        server.base_url + "/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        for raw in response:
            line = raw.decode().strip()
            if line:
                out.append(line)
                first_event.set()


def _post_status(server: ServerProcess) -> int:
    body = {"model": MODEL_NAME, "prompt": "hi", "max_tokens": 1}
    request = urllib.request.Request(
        server.base_url + "/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _events(lines: list[str]) -> tuple[list[dict[str, Any]], bool]:
    payloads = [line.removeprefix("data: ") for line in lines]
    done = bool(payloads) and payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads if p != "[DONE]"], done


def _finish_reasons(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["choices"][0]["finish_reason"] for e in events if e["choices"] and e["choices"][0]["finish_reason"]
    ]


def test_sigterm_drains_short_streams_and_aborts_long_ones_at_the_deadline(tmp_path: Path) -> None:
    """One SIGTERM: readiness off and new work refused at once; a short stream completes; a stream
    that would outlive the drain timeout ends with finish_reason "abort"; the process exits 0."""
    server = start_server(tmp_path, "--drain-timeout", "10", "--max-batch-size", "2")
    try:
        server.wait_ready()
        short: list[str] = []
        long: list[str] = []
        started = [threading.Event(), threading.Event()]
        clients = [
            threading.Thread(target=_stream_lines, args=(server, {**body, "model": MODEL_NAME}, flag, out))
            for body, flag, out in (
                (
                    {"prompt": "Count:", "max_tokens": 6, "ignore_eos": True, "stream": True},
                    started[0],
                    short,
                ),
                (
                    {"prompt": "Story:", "max_tokens": 5000, "ignore_eos": True, "stream": True},
                    started[1],
                    long,
                ),
            )
        ]
        for client in clients:
            client.start()
        assert all(flag.wait(60) for flag in started), server.log_tail()
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while server.get("/ready")[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.get("/ready")[0] == 503
        assert _post_status(server) == 503
        assert server.get("/health")[0] == 200
        assert server.process.wait(90) == 0, server.log_tail()
        assert time.monotonic() - signalled < 60
        for client in clients:
            client.join(30)
    finally:
        server.stop()
    short_events, short_done = _events(short)
    assert short_done and _finish_reasons(short_events) == ["length"]  # ran to its end during the drain
    assert "".join(e["choices"][0]["text"] for e in short_events if e["choices"])
    long_events, _ = _events(long)
    assert _finish_reasons(long_events) == ["abort"]  # cut at the drain deadline, and told so
