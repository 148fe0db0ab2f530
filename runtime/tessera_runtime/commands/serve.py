"""`tessera-runtime serve`: the OpenAI-compatible CPU model server."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..server.run import ServeOptions


def _run(options: ServeOptions) -> None:
    # Imported here: torch takes seconds to import, and other subcommands do not need it.
    from ..server.run import serve

    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(options))
    else:
        uvloop.run(serve(options))


def serve_command(
    model: Path = typer.Option(
        ..., "--model", help="A model directory (safetensors + tokenizer) or a .gguf file."
    ),
    served_model_name: str | None = typer.Option(None, help="The name clients pass as `model`."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (pods pass their pod IP)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    max_batch_size: int = typer.Option(8, min=1, help="Sequences decoded together."),
    max_queue: int = typer.Option(64, min=0, help="Requests that may wait for a slot; more get 429."),
    max_model_len: int | None = typer.Option(None, min=1, help="Context length (default: the model's)."),
    drain_timeout: float = typer.Option(30.0, min=0, help="Seconds in-flight requests get after SIGTERM."),
    threads: int = typer.Option(os.cpu_count() or 1, min=1, help="torch CPU threads."),
    gguf_cache: str | None = typer.Option(
        None,
        help="Keep converted GGUF models here (default $TESSERA_GGUF_CACHE or ~/.cache/tessera/gguf; 'none': off).",
    ),
    max_body_bytes: int = typer.Option(16 * 1024 * 1024, min=1, help="Largest request body (413 above)."),
    header_timeout: float = typer.Option(15.0, min=0.1, help="Seconds for a request head to arrive (slow clients)."),
    body_timeout: float = typer.Option(60.0, min=0.1, help="Seconds for a request body to arrive (408 after)."),
    log_level: str = typer.Option("INFO", help="Logging level."),
) -> None:
    """Serve a model with an OpenAI-compatible API on CPU (continuous batching, vLLM-named metrics)."""
    from ..engines.loader import default_gguf_cache
    from ..request_limits import RequestLimits
    from ..server.run import ServeOptions

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not model.exists():
        raise typer.BadParameter(f"{model} does not exist", param_hint="--model")
    options = ServeOptions(
        model=model,
        served_model_name=served_model_name,
        host=host,
        port=port,
        max_batch_size=max_batch_size,
        max_queue=max_queue,
        max_model_len=max_model_len,
        drain_timeout=drain_timeout,
        threads=threads,
        gguf_cache=None if gguf_cache == "none" else Path(gguf_cache) if gguf_cache else default_gguf_cache(),
        limits=RequestLimits(max_body_bytes=max_body_bytes, header_timeout=header_timeout, body_timeout=body_timeout),
    )
    _run(options)


def register(app: typer.Typer) -> None:
    """Add `serve`."""
    app.command("serve")(serve_command)
