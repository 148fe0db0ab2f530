"""One streamed chat completion through the router: when the first token came, and the answer.

Plain http.client instead of the `openai` package: its import alone takes seconds on a loaded
2-core machine, and this request is the end of the command-to-first-token measurement.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

QUESTION = "What is the capital of France? Answer in one sentence."


@dataclass(frozen=True)
class ChatResult:
    """When the first content token arrived (monotonic clock) and the whole answer."""

    first_token_at: float
    answer: str


def stream_chat(router_url: str, model: str, question: str = QUESTION, timeout: float = 120) -> ChatResult:
    """POST /v1/chat/completions with stream=true and read the SSE events to the end."""
    parts = urllib.parse.urlsplit(router_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 32,
        "temperature": 0,
        "stream": True,
    }
    first_token_at: float | None = None
    pieces: list[str] = []
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"router answered {response.status}: {response.read()[:500]!r}")
        for raw in response:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"stream failed: {event['error']}")
            for choice in event.get("choices", []):
                text = (choice.get("delta") or {}).get("content") or ""
                if text and first_token_at is None:
                    first_token_at = time.monotonic()
                pieces.append(text)
    finally:
        connection.close()
    if first_token_at is None:
        raise RuntimeError("the stream ended without any content")
    return ChatResult(first_token_at, "".join(pieces))


def process_started_monotonic() -> float:
    """This process's start time on the monotonic clock (so the measurement includes Python's start).

    /proc/self/stat gives the start in clock ticks since boot; CLOCK_BOOTTIME counts from boot too.
    Falls back to now when /proc is unavailable.
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat[stat.rfind(")") + 2 :].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - max(age, 0.0)
    except (OSError, ValueError, IndexError):
        return time.monotonic()
