"""Export to JSONL, Parquet and HF folders, and import back: the rows survive the round trip."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_registry import Registry, RegistryError
from datasets_registry.kinds import MESSAGES_TYPE
from datasets_registry.transfer import export_version, import_file

MESSAGES = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": f"a{i}"}] for i in range(5)]
TABLE = pa.table({"id": [f"r{i}" for i in range(5)], "messages": pa.array(MESSAGES, MESSAGES_TYPE)})


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_then_import_round_trips(registry: Registry, tmp_path: Path, fmt: str) -> None:
    version = registry.write("src", TABLE, kind="sft")
    dest = tmp_path / {"jsonl": "out.jsonl", "parquet": "out.parquet", "hf": "hf-folder"}[fmt]
    export_version(version, fmt, dest)
    imported = import_file(registry, dest, "copy", "sft")
    assert imported.kind == "sft" and imported.num_rows == 5
    assert sorted(imported.to_arrow().to_pylist(), key=lambda r: r["id"]) == TABLE.to_pylist()
    assert imported.info.lineage.sources[0].startswith(f"file:{dest.resolve()}#sha256=")
    if fmt == "hf":
        card = (dest / "README.md").read_text()
        assert "src@1" in card and "path: data/train-*.parquet" in card
        assert pq.read_table(dest / "data" / "train-00000-of-00001.parquet").num_rows == 5


def test_import_checks_kind_and_file(registry: Registry, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "no answer"}]}\n')
    with pytest.raises(RegistryError, match="does not end with an assistant turn"):
        import_file(registry, bad, "x", "sft")
    with pytest.raises(RegistryError, match="does not exist"):
        import_file(registry, tmp_path / "absent.jsonl", "x", "sft")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"a": 1}\n{not json\n')
    with pytest.raises(RegistryError, match="cannot read"):
        import_file(registry, broken, "x", "generic")
    assert registry.names() == []


def test_import_of_an_hf_folder_takes_the_train_split_only(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    (folder / "data").mkdir(parents=True)
    pq.write_table(TABLE, folder / "data" / "train-00000-of-00001.parquet")
    pq.write_table(TABLE.slice(0, 2), folder / "data" / "test-00000-of-00001.parquet")
    imported = import_file(registry, folder, "hf", "sft")
    assert imported.num_rows == 5
    # Without the HF layout, every Parquet file under the folder is read.
    flat = tmp_path / "flat"
    flat.mkdir()
    pq.write_table(TABLE, flat / "a.parquet")
    pq.write_table(TABLE.slice(0, 2), flat / "b.parquet")
    assert import_file(registry, flat, "flat", "sft").num_rows == 7


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_creates_missing_parent_folders(registry: Registry, tmp_path: Path, fmt: str) -> None:
    version = registry.write("src", TABLE, kind="sft")
    dest = tmp_path / "not" / "yet" / f"out.{fmt}"
    assert export_version(version, fmt, dest).exists()
    assert import_file(registry, dest, "back", "sft").num_rows == 5
