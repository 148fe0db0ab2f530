"""`tessera-runtime fetch`: materialise a Model's weights (the pod's init container)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer


def fetch_command(
    source: str = typer.Option(
        ..., help="file://, pvc://CLAIM/PATH, hf://ORG/NAME, s3://BUCKET/PREFIX or gs://..."
    ),
    dest: Path = typer.Option(..., help="Destination directory (the model volume)."),
    revision: str | None = typer.Option(None, help="Revision (hf:// only): a branch, tag or commit."),
    credentials_file: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="A mounted Secret: HF token, S3 keys (JSON or INI) or GCS key JSON.",
    ),
    pvc_root: str | None = typer.Option(
        None, help="Where PVCs are mounted (default $TESSERA_PVC_ROOT or /mnt/pvc)."
    ),
    log_level: str = typer.Option("INFO"),
) -> None:
    """Fetch weights into --dest; a completion marker makes restarts skip the work."""
    from ..fetch import FetchError, fetch

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = fetch(source, dest, revision=revision, credentials_file=credentials_file, pvc_root=pvc_root)
    except FetchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except Exception as exc:  # store errors (botocore, gcsfs, network): report, exit non-zero
        typer.echo(f"error: fetching {source} failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    summary = {"files": result.files, "totalBytes": result.total_bytes, "skipped": result.skipped}
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    """Add `fetch`."""
    app.command("fetch")(fetch_command)
