"""The `tessera-runtime` command: model server, vLLM launcher, weights fetcher, router, evaluator.

Subcommand modules expose `register(app)`; this file only lists them.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: tuple[str, ...] = (
    "tessera_runtime.commands.serve",
    "tessera_runtime.commands.fetch",
    "tessera_runtime.commands.vllm",
    "tessera_runtime.commands.router",
    "tessera_runtime.commands.evaluate",
)

app = typer.Typer(
    name="tessera-runtime",
    help="Tessera's data plane: serve a model, launch vLLM, fetch weights, route, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Tessera's data plane."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
