"""The `tessera` command.

Each command group lives in its own module under `tessera_operator.commands` and exposes
`register(app)`, so this file stays a list and command modules stay small and independent.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: tuple[str, ...] = (
    "tessera_operator.commands.validate",
    "tessera_operator.commands.dev",
    "tessera_operator.commands.devstack",
    "tessera_operator.commands.plan",
    "tessera_operator.commands.evaluate",
    "tessera_operator.commands.eval_report",
    "tessera_operator.commands.simulate",
    "tessera_operator.commands.rollout",
)

app = typer.Typer(
    name="tessera",
    help="Tessera: plan, serve, autoscale and safely roll out LLMs on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Tessera: plan, serve, autoscale and safely roll out LLMs on Kubernetes."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
