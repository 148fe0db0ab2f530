"""Fixtures for the runtime tests: one real SmolLM2 server per session, on loopback and a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from runtime_server import SESSION_BATCH, SESSION_QUEUE, ServerProcess, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The session's server (the model is loaded once for every test that uses it)."""
    proc = start_server(
        tmp_path_factory.mktemp("server"),
        "--max-batch-size", str(SESSION_BATCH), "--max-queue", str(SESSION_QUEUE), "--drain-timeout", "5",
    )  # fmt: skip
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def openai_client(server: ServerProcess):  # type: ignore[no-untyped-def]
    """The official OpenAI client pointed at the session server (no automatic retries)."""
    import openai

    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
