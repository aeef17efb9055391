"""`assay data`: inspect the datasets in the registry."""

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from datagen.cli.common import console, open_registry

app = typer.Typer(help="Versioned datasets in the registry.", no_args_is_help=True)

Ref = Annotated[str, typer.Argument(help="NAME, NAME@VERSION, NAME@TAG or NAME@latest.")]


@app.command("list")
def list_datasets() -> None:
    """List datasets with their latest version."""
    registry = open_registry()
    table = Table(title=f"datasets in {registry.root}", title_justify="left")
    for column in ("name", "latest", "versions", "kind", "rows", "created", "job"):
        table.add_column(column)
    for name in registry.names():
        versions = registry.versions(name)
        last = versions[-1]
        table.add_row(
            name, str(last.version), str(len(versions)), last.kind, str(last.num_rows),
            f"{last.created_at:%Y-%m-%d %H:%M:%S}", last.job_id or "",
        )  # fmt: skip
    console.print(table)


@app.command("show")
def show(ref: Ref) -> None:
    """Show a version: kind, rows, schema, lineage, and all versions of the dataset."""
    registry = open_registry()
    version = registry.open(ref)
    info = version.info
    console.print(f"[bold]{version.ref}[/]  kind={info.kind}  rows={info.num_rows}  "
                  f"created={info.created_at:%Y-%m-%d %H:%M:%S %Z}")  # fmt: skip
    schema = Table(title="schema", title_justify="left")
    schema.add_column("column")
    schema.add_column("type")
    for field in version.schema:
        schema.add_row(field.name, str(field.type))
    console.print(schema)
    lineage = info.lineage
    console.print("[bold]lineage[/]")
    console.print(f"  job: {lineage.job_id or '-'}  pipeline: {lineage.pipeline or '-'}  "
                  f"spec sha256: {(lineage.spec_hash or '-')[:16]}")  # fmt: skip
    for model in lineage.models:
        console.print(f"  model: {model}")
    for source in lineage.sources:
        console.print(f"  source: {source}")
    if lineage.metrics:
        console.print(f"  metrics: {json.dumps(lineage.metrics)}")
    versions = Table(title="versions", title_justify="left")
    for column in ("version", "rows", "created", "job"):
        versions.add_column(column)
    for other in registry.versions(version.name):
        mark = " *" if other.version == version.version else ""
        versions.add_row(f"{other.version}{mark}", str(other.num_rows),
                         f"{other.created_at:%Y-%m-%d %H:%M:%S}", other.job_id or "")  # fmt: skip
    console.print(versions)


def _shorten(value: Any, limit: int) -> Any:
    """Cut long strings inside nested values so a row fits on screen."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"… (+{len(value) - limit} chars)"
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    return value


@app.command("head")
def head(
    ref: Ref,
    n: Annotated[int, typer.Option("-n", help="Number of rows.")] = 5,
    width: Annotated[int, typer.Option(help="Cut strings longer than this (0: never).")] = 300,
) -> None:
    """Print the first rows of a version as JSON."""
    version = open_registry().open(ref)
    for row in version.head(n).to_pylist():
        shown = _shorten(row, width) if width > 0 else row
        console.print_json(json.dumps(shown, ensure_ascii=False, default=str))
