"""`tessera-operator`: run the Tessera operator (kopf) against a cluster.

Settings come from TESSERA_* environment variables (see `tessera_operator.settings`); the flags
below override them. The cluster is the in-cluster service account, else $KUBECONFIG, else
~/.kube/config.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import typer

from tessera_operator.settings import OperatorSettings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def operator(
    namespace: list[str] = typer.Option([], "--namespace", "-n", help="Namespace to watch (repeatable)."),
    all_namespaces: bool | None = typer.Option(None, "--all-namespaces", "-A", help="Watch every namespace."),
    standalone: bool | None = typer.Option(
        None, "--standalone/--peering", help="Run alone (tests, one replica) or coordinate replicas via peering."),
    peering_name: str | None = typer.Option(None, help="KopfPeering object replicas coordinate through."),
    liveness: str | None = typer.Option(None, help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz."),
    log_level: str | None = typer.Option(None, help="DEBUG, INFO, WARNING or ERROR."),
    refresh_seconds: float | None = typer.Option(None, min=1.0, help="Period of every Model's status refresh."),
) -> None:
    """Reconcile Models into sharded GPU (or CPU) workloads with trustworthy status."""
    config = OperatorSettings.from_env()
    overrides: dict[str, Any] = {
        "namespaces": tuple(namespace) or None,
        "all_namespaces": all_namespaces,
        "standalone": standalone,
        "peering_name": peering_name,
        "liveness": liveness,
        "log_level": log_level,
        "refresh_seconds": refresh_seconds,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kopf logs every watch event at DEBUG and every handler success at INFO (a line per pod change and
    # per refresh); below DEBUG, keep only its warnings and errors about objects.
    logging.getLogger("kopf").setLevel(max(logging.INFO, logging.getLogger().level))
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from tessera_operator import handlers  # imports kopf: only when actually running

    handlers.run(config)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
