"""Export a version to JSONL, Parquet or a Hugging Face dataset folder; import files as a
new version.

Import takes every TRL dataset type and format (datasets_registry/trl_formats.py), converts it to
its kind's canonical columns and records the original format in lineage; a row without an `id`
gets a content-derived one, `content_id` of the row's canonical values, the same recipe as a
pipeline's source rows. Export writes the stored columns, or any TRL format the kind allows
(by default the one the rows were imported from).

Export streams batch by batch, so its memory is bounded by a batch, not the dataset (a TRL
format converts batch by batch too). Import reads the whole file (or folder) into one Arrow
table before the checked write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from datasets_registry import storage
from datasets_registry.errors import RegistryError
from datasets_registry.lineage import Lineage, content_id
from datasets_registry.registry import DatasetVersion, Registry
from datasets_registry.trl_formats import TrlFormat, detect, to_canonical, to_trl

ExportFormat = Literal["jsonl", "parquet", "hf"]


TRL_PREFIX = "trl:"


def export_trl_format(version: DatasetVersion, trl: str | None) -> TrlFormat | None:
    """The TRL format an export writes: `trl` (`TYPE/STYLE`, or `stored` for the stored columns),
    else the format the version was imported from, else None (the stored columns).

    Raises:
        RegistryError: an unknown format, or one whose kind is not the version's.
    """
    if trl == "stored":
        return None
    if trl is None:
        recorded = version.info.lineage.imported_format or ""
        return TrlFormat.parse(recorded.removeprefix(TRL_PREFIX)) if recorded.startswith(TRL_PREFIX) else None
    fmt = TrlFormat.parse(trl)
    if fmt.kind != version.kind:
        raise RegistryError(
            f"{version.ref} is of kind {version.kind!r}; TRL format {fmt} is kind {fmt.kind!r}"
        )
    return fmt


def export_version(version: DatasetVersion, fmt: ExportFormat, dest: Path, trl: str | None = None) -> Path:
    """Write `version` to `dest`.

    `hf` writes a folder in the Hugging Face Hub layout (`data/train-00000-of-00001.parquet`
    and a README dataset card with the lineage), loadable with `datasets.load_dataset(dest)`.

    Missing parent folders of `dest` are created.

    Args:
        trl: A TRL format to write (`TYPE/STYLE`), `stored` for the stored columns, or None for
            the format the rows were imported from (the stored columns when not imported).

    Returns:
        The file or folder written.
    """
    if fmt not in ("jsonl", "parquet", "hf"):
        raise RegistryError(f"unknown export format {fmt!r}; formats: jsonl, parquet, hf")
    trl_format = export_trl_format(version, trl)
    dest.parent.mkdir(parents=True, exist_ok=True)
    batches: Iterable[pa.RecordBatch] = version.to_lance().to_batches()
    schema = version.schema
    if trl_format is not None:
        batches = (
            to_trl(pa.Table.from_batches([batch]), trl_format).to_batches()[0]
            for batch in batches
            if batch.num_rows
        )
        schema = to_trl(version.head(1), trl_format).schema
    if fmt == "jsonl":
        with dest.open("w", encoding="utf-8") as out:
            for batch in batches:
                for row in batch.to_pylist():
                    out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return dest
    if fmt == "parquet":
        _write_parquet(batches, schema, dest)
        return dest
    (dest / "data").mkdir(parents=True, exist_ok=True)
    _write_parquet(batches, schema, dest / "data" / "train-00000-of-00001.parquet")
    (dest / "README.md").write_text(_dataset_card(version))
    return dest


def _write_parquet(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: Path) -> None:
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:  # storage.cast_table: Arrow's own cast breaks null-typed children
            writer.write_table(storage.cast_table(pa.Table.from_batches([batch]), schema))


def _dataset_card(version: DatasetVersion) -> str:
    lineage = version.info.lineage.model_dump(mode="json", exclude={"spec"})
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
        "    path: data/train-*.parquet\n---\n\n"
        f"# {version.ref}\n\nExported from an assay registry. Kind: `{version.kind}`, "
        f"{version.num_rows} rows.\n\n## Lineage\n\n```json\n{json.dumps(lineage, indent=2)}\n```\n"
    )


def source_files(src: Path) -> list[Path]:
    """The files an import of `src` reads.

    For a folder: the train split of the Hugging Face layout (`data/train-*.parquet`) when
    there is one, else every `.parquet` file under it.
    """
    if not src.exists():
        raise RegistryError(f"import: {src} does not exist")
    if not src.is_dir():
        return [src]
    files = (
        sorted(src.glob("data/train-*.parquet"))
        or sorted(src.rglob("*.parquet"))
        or sorted(src.glob("*.txt"))
    )
    if not files:
        raise RegistryError(f"import: no .parquet or .txt files under {src}")
    return files


def text_documents(src: Path) -> pa.Table:
    """Documents (kind `documents`) from a .txt file or a folder of .txt files, one per file.

    `id` is the file name without suffix, `title` its first non-empty line (at most 200
    characters), `source` `file:NAME`, and `license` the first non-empty line of a `LICENSE*`
    file beside them, else `unknown`.
    """
    files = source_files(src)
    folder = src if src.is_dir() else src.parent
    licenses = sorted(p for p in folder.glob("LICENSE*") if p.is_file())
    license_lines = (
        [line.strip() for line in licenses[0].read_text(errors="replace").splitlines()] if licenses else []
    )
    license_name = next((line for line in license_lines if line), "unknown")
    rows = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise RegistryError(f"import: {file} is not UTF-8: {err.reason}") from err
        title = next((line.strip() for line in text.splitlines() if line.strip()), file.stem)[:200]
        rows.append({"id": file.stem, "title": title, "text": text, "source": f"file:{file.name}",
                     "license": license_name})  # fmt: skip
    return pa.Table.from_pylist(rows)


def read_file(src: Path) -> pa.Table:
    """Read a JSONL or Parquet file, a folder of Parquet files, or .txt documents (see `source_files`)."""
    files = source_files(src)
    if files[0].suffix == ".txt":
        return text_documents(src)
    try:
        if src.is_dir():
            return pa.concat_tables([pq.read_table(f) for f in files])
        if src.suffix == ".parquet":
            return pq.read_table(src)
        if src.suffix in (".jsonl", ".json"):
            return pajson.read_json(src)
    except (pa.ArrowInvalid, OSError) as err:
        raise RegistryError(f"import: cannot read {src}: {err}") from err
    raise RegistryError(
        f"import: {src}: expected .jsonl, .parquet, .txt or a folder of .parquet or .txt files"
    )


def canonical_rows(table: pa.Table, kind: str | None) -> tuple[pa.Table, str, TrlFormat | None]:
    """`table` in the canonical columns of its kind, the kind, and the TRL format it came in.

    Args:
        kind: The kind asked for, or None to take the one the TRL format detected maps to.
            `generic` (and the kinds no TRL format maps to, such as `code`) keep the columns.

    Raises:
        RegistryError: no kind given and no TRL format recognised, or the format's kind is not
            the kind asked for.
    """
    detected = detect(table.schema)
    if kind is None and {"title", "text", "source", "license"} <= set(table.column_names):
        kind = "documents"  # a text-folder import, or documents in JSONL
    if kind == "documents":
        return table, kind, None  # its `text` column is a document, not TRL language modelling
    if kind is None:
        if detected is None:
            raise RegistryError(
                f"import: columns {', '.join(table.column_names)} are not a TRL dataset format "
                "(text, messages, prompt[, completion], prompt/chosen/rejected, chosen/rejected, "
                "prompt/completion/label, prompt/completions/labels); give --kind"
            )
        kind = detected.kind
    if detected is None or kind != detected.kind:
        if detected is not None and kind != "generic":
            raise RegistryError(
                f"import: the rows are TRL {detected} (kind {detected.kind!r}), not kind {kind!r}; "
                f"use --kind {detected.kind} or --kind generic"
            )
        return table, kind, None
    return to_canonical(table, detected), kind, detected


def with_ids(table: pa.Table) -> pa.Table:
    """`table` with a content-derived `id` per row where it has no `id` column."""
    if "id" in table.column_names:
        return table
    ids = [content_id(row) for row in table.to_pylist()]
    return table.append_column("id", pa.array(ids, type=pa.string()))


def import_file(registry: Registry, src: Path, name: str, kind: str | None = None) -> DatasetVersion:
    """Register the rows of `src` as a new version of `name`, with the file as its source.

    A TRL dataset format is converted to its kind (detected when `kind` is None) and recorded
    in lineage; rows without an `id` get content-derived ids. The source's sha256 covers the
    files read (see `source_files`).
    """
    table, kind, trl_format = canonical_rows(read_file(src), kind)
    digest = hashlib.sha256()
    for file in source_files(src):
        digest.update(file.read_bytes())
    lineage = Lineage(
        sources=[f"file:{src.resolve()}#sha256={digest.hexdigest()}"],
        imported_format=f"{TRL_PREFIX}{trl_format}" if trl_format else None,
    )
    return registry.write(name, with_ids(table), kind=kind, lineage=lineage)
