"""`tessera validate FILE...`: check manifests offline with the CRDs' schema and CEL rules."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.console import Console

from tessera_operator.validation import is_tessera_manifest, validate_manifest


def validate(
    files: list[Path] = typer.Argument(..., help="YAML files (multi-document allowed); - reads stdin."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
) -> None:
    """Validate Model, EvaluationSuite and ModelEvaluation manifests exactly as the apiserver would.

    Exits non-zero when any manifest has an error; each error names the field path and the problem.
    """
    console = Console(stderr=False, highlight=False)
    failed = checked = 0
    for path in files:
        try:
            text = typer.get_text_stream("stdin").read() if str(path) == "-" else path.read_text()
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
        except (OSError, yaml.YAMLError) as read_error:
            console.print(f"[red]✗[/] {path}: cannot read: {read_error}")
            failed += 1
            continue
        for index, document in enumerate(documents):
            label = f"{path}[{index}]" if len(documents) > 1 else str(path)
            if not is_tessera_manifest(document):
                if not quiet:
                    console.print(f"[dim]- {label}: not a tessera.dev manifest, skipped[/]")
                continue
            checked += 1
            name = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name', '?')}"
            errors = validate_manifest(document)
            if errors:
                failed += 1
                console.print(f"[red]✗[/] {label} {name}")
                for error in errors:
                    console.print(f"    {error.path or '(root)'}: {error.message}", markup=False)
            elif not quiet:
                console.print(f"[green]✓[/] {label} {name}")
    if not quiet:
        console.print(f"{checked} manifest(s) checked, {failed} with errors")
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
