"""Export a version to JSONL, Parquet or a Hugging Face dataset folder; import files as a
new version.

Export streams batch by batch, so its memory is bounded by a batch, not the dataset. Import
reads the whole file (or folder) into one Arrow table before the checked write.
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

from datasets_registry.errors import RegistryError
from datasets_registry.lineage import Lineage
from datasets_registry.registry import DatasetVersion, Registry

ExportFormat = Literal["jsonl", "parquet", "hf"]


def export_version(version: DatasetVersion, fmt: ExportFormat, dest: Path) -> Path:
    """Write `version` to `dest`.

    `hf` writes a folder in the Hugging Face Hub layout (`data/train-00000-of-00001.parquet`
    and a README dataset card with the lineage), loadable with `datasets.load_dataset(dest)`.

    Missing parent folders of `dest` are created.

    Returns:
        The file or folder written.
    """
    if fmt not in ("jsonl", "parquet", "hf"):
        raise RegistryError(f"unknown export format {fmt!r}; formats: jsonl, parquet, hf")
    dest.parent.mkdir(parents=True, exist_ok=True)
    batches = version.to_lance().to_batches()
    if fmt == "jsonl":
        with dest.open("w", encoding="utf-8") as out:
            for batch in batches:
                for row in batch.to_pylist():
                    out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return dest
    if fmt == "parquet":
        _write_parquet(batches, version.schema, dest)
        return dest
    (dest / "data").mkdir(parents=True, exist_ok=True)
    _write_parquet(batches, version.schema, dest / "data" / "train-00000-of-00001.parquet")
    (dest / "README.md").write_text(_dataset_card(version))
    return dest


def _write_parquet(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: Path) -> None:
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


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
    files = sorted(src.glob("data/train-*.parquet")) or sorted(src.rglob("*.parquet"))
    if not files:
        raise RegistryError(f"import: no .parquet files under {src}")
    return files


def read_file(src: Path) -> pa.Table:
    """Read a JSONL or Parquet file, or a folder of Parquet files (see `source_files`)."""
    files = source_files(src)
    try:
        if src.is_dir():
            return pa.concat_tables([pq.read_table(f) for f in files])
        if src.suffix == ".parquet":
            return pq.read_table(src)
        if src.suffix in (".jsonl", ".json"):
            return pajson.read_json(src)
    except (pa.ArrowInvalid, OSError) as err:
        raise RegistryError(f"import: cannot read {src}: {err}") from err
    raise RegistryError(f"import: {src}: expected .jsonl, .parquet or a folder of .parquet files")


def import_file(registry: Registry, src: Path, name: str, kind: str) -> DatasetVersion:
    """Register the rows of `src` as a new version of `name`, with the file as its source.

    The source's sha256 covers the files read (see `source_files`).
    """
    table = read_file(src)
    digest = hashlib.sha256()
    for file in source_files(src):
        digest.update(file.read_bytes())
    lineage = Lineage(sources=[f"file:{src.resolve()}#sha256={digest.hexdigest()}"])
    return registry.write(name, table, kind=kind, lineage=lineage)
