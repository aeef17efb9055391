"""`assay data`: inspect, tag, compare, export, import and clean up registry datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from assay.cli.common import console, open_model_store, open_registry
from assay.cli.output import JsonOption, emit_json, emit_jsonl, emit_table
from assay.errors import AssayError

if TYPE_CHECKING:  # imported where used, so `assay --help` stays fast
    import pyarrow as pa

app = typer.Typer(help="Versioned datasets in the registry.", no_args_is_help=True)

Ref = Annotated[str, typer.Argument(help="NAME, NAME@VERSION, NAME@TAG or NAME@latest.")]
KINDS = "prompts, sft, preference, rm_pairs, code, text, unpaired_preference, stepwise, documents, generic"


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}"


@app.command("list")
def list_datasets(as_json: JsonOption = False) -> None:
    """List datasets with their latest version."""
    registry = open_registry()
    records = []
    for name in registry.names():
        versions = registry.versions(name)
        last = versions[-1]
        records.append(
            {
                "name": name,
                "latest": last.version,
                "versions": len(versions),
                "kind": last.kind,
                "rows": last.num_rows,
                "created_at": last.created_at,
                "tags": registry.tags(name),
                "uri": registry.dataset_uri(name),
            }
        )
    if as_json:
        emit_json(records)
        return
    rows = [
        [r["name"], r["latest"], r["versions"], r["kind"], r["rows"], _when(r["created_at"]),
         ", ".join(f"{tag}@{v}" for tag, v in r["tags"].items())]
        for r in records
    ]  # fmt: skip
    emit_table(
        f"datasets in {registry.root}",
        ("name", "latest", "versions", "kind", "rows", "created", "tags"),
        rows,
    )


@app.command("show")
def show(ref: Ref, as_json: JsonOption = False) -> None:
    """Show a version: kind, rows, size, where it lives, schema, lineage, languages, all versions."""
    registry = open_registry()
    version = registry.open(ref)
    info = version.info
    languages: dict[str, int] = {}
    if "language" in version.schema.names and info.num_rows:
        counts = version.to_polars(["language"])["language"].value_counts(sort=True)
        languages = {str(lang): count for lang, count in counts.iter_rows()}
    if as_json:
        emit_json(
            {
                "ref": version.ref,
                "name": version.name,
                "version": version.version,
                "kind": info.kind,
                "rows": info.num_rows,
                "size_bytes": version.size_bytes(),
                "uri": version.uri,
                "created_at": info.created_at,
                "schema": {field.name: str(field.type) for field in version.schema},
                "lineage": info.lineage,
                "languages": languages,
                "tags": registry.tags(version.name),
                "versions": [
                    {"version": v.version, "rows": v.num_rows, "created_at": v.created_at, "job_id": v.job_id}
                    for v in registry.versions(version.name)
                ],
            }
        )
        return
    size = version.size_bytes() / 2**20
    console.print(
        f"[bold]{version.ref}[/]  kind={info.kind}  rows={info.num_rows}  size={size:.1f} MiB  "
        f"created={info.created_at:%Y-%m-%d %H:%M:%S %Z}"
    )
    console.print(
        f"  lance: {version.uri} (lance version {version.version}: lance.dataset(uri, "
        f"version={version.version}), pl.scan_lance)",
        highlight=False,
        soft_wrap=True,
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
    if languages:
        shown = ", ".join(f"{lang}: {count}" for lang, count in list(languages.items())[:10])
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


def _print_rows(table: pa.Table, width: int, full: bool, columns: str | None) -> None:
    """Rows as JSON lines; in a terminal long strings are cut at `width` unless `full`."""
    if columns:
        wanted = [name.strip() for name in columns.split(",") if name.strip()]
        missing = [name for name in wanted if name not in table.column_names]
        if missing:
            raise AssayError(
                f"--columns: no column {', '.join(missing)}; columns: {', '.join(table.column_names)}"
            )
        table = table.select(wanted)
    rows = table.to_pylist()
    if console.is_terminal and not full and width > 0:
        rows = [_shorten(row, width) for row in rows]
    emit_jsonl(rows)


Width = Annotated[int, typer.Option(help="In a terminal, cut strings longer than this (0: never).")]
Full = Annotated[bool, typer.Option("--full", help="Never cut strings (piped output never is).")]
Columns = Annotated[str | None, typer.Option(help="Only these columns, comma-separated.")]


@app.command("head")
def head(
    ref: Ref,
    n: Annotated[int, typer.Option("-n", min=1, help="Number of rows.")] = 5,
    width: Width = 300,
    full: Full = False,
    columns: Columns = None,
) -> None:
    """Print the first rows of a version, one JSON object per line."""
    _print_rows(open_registry().open(ref).head(n), width, full, columns)


@app.command("sample")
def sample(
    ref: Ref,
    where: Annotated[str | None, typer.Option(help="SQL filter, e.g. \"language = 'fr'\".")] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="Number of rows.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    width: Width = 300,
    full: Full = False,
    columns: Columns = None,
) -> None:
    """Print random rows of a version (one JSON object per line), optionally among those matching
    a filter."""
    _print_rows(open_registry().open(ref).sample(n, where=where, seed=seed), width, full, columns)


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
def stats(ref: Ref, as_json: JsonOption = False) -> None:
    """Per-column counts and nulls, languages, score histograms, length percentiles."""
    from assay.cli.render import render_stats

    result = open_registry().open(ref).stats()
    if as_json:
        emit_json(result)
        return
    for renderable in render_stats(result):
        console.print(renderable)


@app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="The older version, NAME@V1.")],
    new: Annotated[str, typer.Argument(help="The newer version, NAME@V2 (or another dataset).")],
    as_json: JsonOption = False,
) -> None:
    """Rows added, removed and changed by `id`, schema changes and stat deltas."""
    from assay.cli.render import render_diff

    result = open_registry().diff(old, new)
    if as_json:
        emit_json(result)
        return
    for renderable in render_diff(result):
        console.print(renderable)


@app.command("lineage")
def lineage(ref: Ref, as_json: JsonOption = False) -> None:
    """The graph back to the sources: jobs, specs, models and source dataset versions."""
    from datasets_registry.lineage import Lineage, lineage_graph

    registry = open_registry()
    root = registry.open(ref)

    def lookup(source: str) -> Lineage | None:
        try:
            return registry.open(source).info.lineage
        except Exception:  # noqa: BLE001 - a removed or foreign source is shown as such
            return None

    graph = lineage_graph(root.ref, lookup)
    if as_json:
        emit_json(graph)
        return
    from assay.cli.render import add_lineage

    tree = Tree(f"lineage of {root.ref}")
    add_lineage(tree, graph)
    console.print(tree)


@app.command("export")
def export(
    ref: Ref,
    dest: Annotated[
        Path, typer.Argument(help="File (jsonl, parquet) or folder (hf) to write; parents are created.")
    ],
    format: Annotated[str, typer.Option("--format", help="jsonl, parquet or hf.")] = "jsonl",
    trl: Annotated[
        str | None,
        typer.Option(
            help="Write a TRL format, TYPE/STYLE (e.g. preference/standard), or `stored` for the stored "
            "columns; default: the format the rows were imported in, else the stored columns."
        ),
    ] = None,
) -> None:
    """Export a version as JSONL, Parquet, or a Hugging Face dataset folder."""
    from datasets_registry.transfer import export_version

    version = open_registry().open(ref)
    written = export_version(version, format, dest, trl)  # type: ignore[arg-type]
    console.print(f"wrote {version.num_rows} rows of {version.ref} to {written}")


@app.command("import")
def import_(
    src: Annotated[Path, typer.Argument(help="A .jsonl or .parquet file, or a folder of .parquet.")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    kind: Annotated[
        str | None,
        typer.Option(help=f"Dataset kind: {KINDS}; default: the kind of the TRL format the rows are in."),
    ] = None,
) -> None:
    """Register a file's rows as a new version: any TRL dataset format is converted to its kind,
    rows without an `id` get content-derived ids, and every row is checked against the kind."""
    from datasets_registry.transfer import import_file

    version = import_file(open_registry(), src, name, kind)
    imported = version.info.lineage.imported_format
    console.print(
        f"registered {version.ref} ({version.num_rows} rows, kind {version.kind}"
        + (f", from {imported}" if imported else "")
        + ")"
    )


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


@app.command("decontam")
def decontam(
    ref: Ref,
    n: Annotated[int, typer.Option("--n", min=2, help="Word n-gram length (characters: 2n for zh/ja).")] = 8,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Flag a row holding this share of an evaluation item's n-grams (0: any)."
        ),
    ] = 0.5,
    examples: Annotated[int, typer.Option(min=0, help="Overlapping rows to show.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Check a version's texts against every evaluation set (n-gram overlap): rows overlapping
    each set, and the first overlapping rows with the item they match. See docs/decontamination.md."""
    from eval_sets.contamination import check_dataset

    report = check_dataset(open_registry().open(ref), threshold, n=n, examples=examples)
    if as_json:
        emit_json(report.to_json())
        return
    share = f"{report.flagged_rows} of {report.rows} rows ({report.fraction:.2%})"
    console.print(
        f"[bold]{report.dataset}[/]: {share} hold >= {threshold:g} of an evaluation item's "
        f"{report.n}-grams; columns {', '.join(report.columns)}",
        highlight=False,
        soft_wrap=True,
    )
    sets = [[name, count, report.eval_sets.get(name, "")] for name, count in report.by_set.items()]
    emit_table("rows overlapping each evaluation set", ("set", "rows", "identity"), sets)
    if report.examples:
        found = [[e.row, e.set, e.item, f"{e.overlap:.2f}"] for e in report.examples]
        emit_table("first overlapping rows", ("row", "set", "item", "overlap"), found)
