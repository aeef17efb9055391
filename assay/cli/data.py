"""`assay data`: inspect, tag, compare, export, import and clean up registry datasets."""

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from assay.cli.common import console, open_model_store, open_registry

app = typer.Typer(help="Versioned datasets in the registry.", no_args_is_help=True)

Ref = Annotated[str, typer.Argument(help="NAME, NAME@VERSION, NAME@TAG or NAME@latest.")]
KINDS = "prompts, sft, preference, rm_pairs, code, generic"


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}"


@app.command("list")
def list_datasets() -> None:
    """List datasets with their latest version."""
    registry = open_registry()
    table = Table(title=f"datasets in {registry.root}", title_justify="left")
    for column in ("name", "latest", "versions", "kind", "rows", "created", "tags"):
        table.add_column(column)
    for name in registry.names():
        versions = registry.versions(name)
        last = versions[-1]
        tags = ", ".join(f"{tag}@{v}" for tag, v in registry.tags(name).items())
        row = [name, str(last.version), str(len(versions)), last.kind, str(last.num_rows)]
        table.add_row(*row, _when(last.created_at), tags)
    console.print(table)


@app.command("show")
def show(ref: Ref) -> None:
    """Show a version: kind, rows, size, schema, lineage, key stats, and all versions."""
    registry = open_registry()
    version = registry.open(ref)
    info = version.info
    size = version.size_bytes() / 2**20
    console.print(
        f"[bold]{version.ref}[/]  kind={info.kind}  rows={info.num_rows}  size={size:.1f} MiB  "
        f"created={info.created_at:%Y-%m-%d %H:%M:%S %Z}"
    )
    schema = Table(title="schema", title_justify="left")
    schema.add_column("column")
    schema.add_column("type")
    for field in version.schema:
        schema.add_row(field.name, str(field.type))
    console.print(schema)
    lineage = info.lineage
    console.print("[bold]lineage[/]")
    console.print(
        f"  job: {lineage.job_id or '-'}  pipeline: {lineage.pipeline or '-'}  "
        f"spec sha256: {(lineage.spec_hash or '-')[:16]}"
    )
    for label, values in (("model", lineage.models), ("source", lineage.sources)):
        for value in values:
            console.print(f"  {label}: {value}")
    if lineage.metrics:
        console.print(f"  metrics: {json.dumps(lineage.metrics)}")
    if "language" in version.schema.names and info.num_rows:
        counts = version.to_polars(["language"])["language"].value_counts(sort=True)
        shown = ", ".join(f"{lang}: {count}" for lang, count in counts.head(10).iter_rows())
        console.print(f"[bold]languages[/] {shown}")
    tags_by_version: dict[int, list[str]] = {}
    for tag, tagged in registry.tags(version.name).items():
        tags_by_version.setdefault(tagged, []).append(tag)
    versions = Table(title="versions", title_justify="left")
    for column in ("version", "rows", "created", "tags", "job"):
        versions.add_column(column)
    for other in registry.versions(version.name):
        mark = " *" if other.version == version.version else ""
        tags = ", ".join(tags_by_version.get(other.version, []))
        row = [f"{other.version}{mark}", str(other.num_rows), _when(other.created_at), tags]
        versions.add_row(*row, other.job_id or "")
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


def _print_rows(rows: Iterable[dict[str, Any]], width: int) -> None:
    for row in rows:
        shown = _shorten(row, width) if width > 0 else row
        console.print_json(json.dumps(shown, ensure_ascii=False, default=str))


Width = Annotated[int, typer.Option(help="Cut strings longer than this (0: never).")]


@app.command("head")
def head(
    ref: Ref,
    n: Annotated[int, typer.Option("-n", min=1, help="Number of rows.")] = 5,
    width: Width = 300,
) -> None:
    """Print the first rows of a version as JSON."""
    _print_rows(open_registry().open(ref).head(n).to_pylist(), width)


@app.command("sample")
def sample(
    ref: Ref,
    where: Annotated[str | None, typer.Option(help="SQL filter, e.g. \"language = 'fr'\".")] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="Number of rows.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    width: Width = 300,
) -> None:
    """Print random rows of a version, optionally among those matching a filter."""
    _print_rows(open_registry().open(ref).sample(n, where=where, seed=seed).to_pylist(), width)


@app.command("tag")
def tag(
    ref: Ref,
    name: Annotated[str, typer.Argument(help="Tag name.")],
    move: Annotated[bool, typer.Option(help="Move the tag if it points elsewhere.")] = False,
) -> None:
    """Tag a version, e.g. `assay data tag code-sft@7 gold`."""
    version = open_registry().tag(ref, name, move=move)
    console.print(f"{version.name}@{name} -> {version.ref}")


@app.command("untag")
def untag(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    name: Annotated[str, typer.Argument(help="Tag name.")],
) -> None:
    """Remove a tag."""
    open_registry().untag(dataset, name)
    console.print(f"removed tag {name} of {dataset}")


@app.command("stats")
def stats(ref: Ref) -> None:
    """Per-column counts and nulls, languages, score histograms, length percentiles."""
    from assay.cli.render import render_stats

    for renderable in render_stats(open_registry().open(ref).stats()):
        console.print(renderable)


@app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="The older version, NAME@V1.")],
    new: Annotated[str, typer.Argument(help="The newer version, NAME@V2 (or another dataset).")],
) -> None:
    """Rows added, removed and changed by `id`, schema changes and stat deltas."""
    from assay.cli.render import render_diff

    for renderable in render_diff(open_registry().diff(old, new)):
        console.print(renderable)


@app.command("lineage")
def lineage(ref: Ref) -> None:
    """The graph back to the sources: jobs, specs, models and source dataset versions."""
    from datasets_registry.lineage import Lineage, LineageNode, lineage_graph

    registry = open_registry()
    root = registry.open(ref)

    def lookup(source: str) -> Lineage | None:
        try:
            return registry.open(source).info.lineage
        except Exception:  # noqa: BLE001 - a removed or foreign source is shown as such
            return None

    def add(tree: Tree, node: LineageNode) -> None:
        if node.lineage is None:
            tree.add(f"[red]{node.ref}[/] (not in this registry)")
            return
        branch = tree.add(f"[bold]{node.ref}[/]  job {node.lineage.job_id or '-'}")
        if node.lineage.pipeline:
            branch.add(f"pipeline {node.lineage.pipeline} (spec {node.lineage.spec_hash or '-':.16})")
        for model in node.lineage.models:
            branch.add(f"model {model}")
        for file in node.files:
            branch.add(f"file {file}")
        for parent in node.parents:
            add(branch, parent)

    tree = Tree(f"lineage of {root.ref}")
    add(tree, lineage_graph(root.ref, lookup))
    console.print(tree)


@app.command("export")
def export(
    ref: Ref,
    dest: Annotated[
        Path, typer.Argument(help="File (jsonl, parquet) or folder (hf) to write; parents are created.")
    ],
    format: Annotated[str, typer.Option("--format", help="jsonl, parquet or hf.")] = "jsonl",
) -> None:
    """Export a version as JSONL, Parquet, or a Hugging Face dataset folder."""
    from datasets_registry.transfer import export_version

    version = open_registry().open(ref)
    written = export_version(version, format, dest)  # type: ignore[arg-type]
    console.print(f"wrote {version.num_rows} rows of {version.ref} to {written}")


@app.command("import")
def import_(
    src: Annotated[Path, typer.Argument(help="A .jsonl or .parquet file, or a folder of .parquet.")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    kind: Annotated[str, typer.Option(help=f"Dataset kind: {KINDS}.")] = "generic",
) -> None:
    """Register a file's rows as a new version (checked against the kind)."""
    from datasets_registry.transfer import import_file

    version = import_file(open_registry(), src, name, kind)
    console.print(f"registered {version.ref} ({version.num_rows} rows, kind {version.kind})")


@app.command("gc")
def gc(
    dry_run: Annotated[bool, typer.Option(help="Only list what would be removed.")] = False,
) -> None:
    """Remove old versions that are not the latest, not tagged and not in any lineage."""
    registry = open_registry()
    models = {
        ref for record in open_model_store().list() for ref in record.get("lineage", {}).get("datasets", [])
    }
    removed = registry.gc(models, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for info in removed:
        console.print(f"{verb} {info.name}@{info.version} ({info.num_rows} rows, {_when(info.created_at)})")
    console.print(f"{verb} {len(removed)} version(s)")
