"""Source files: every key becomes a column; bad files are clear errors naming file and line."""

from pathlib import Path

import pytest

from assay.errors import AssayError
from datagen.sources import read_jsonl


def test_jsonl_columns_are_the_union_of_keys(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2, "b": "x"}\n')
    table = read_jsonl(path)
    assert table.to_pylist() == [{"a": 1, "b": None}, {"a": 2, "b": "x"}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{oops\n', r"rows\.jsonl:2: invalid JSON"),
        (b'{"a": 1}\n[1, 2]\n', r"rows\.jsonl:2: expected a JSON object"),
        (b'{"a": 1}\n{"a": "\xff"}\n', r"rows\.jsonl:2: not UTF-8"),
        (b'{"a": 1}\n{"a": "text"}\n', "rows disagree on a column's type"),
        (b"\n", "no rows"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(AssayError, match=message):
        read_jsonl(path)


def test_a_registered_source_is_cut_into_blocks_of_a_batch(registry, ray_local: None) -> None:  # noqa: ANN001
    """A registered version is often one fragment: read as one block, a generate stage would
    finish no row before it finished them all (Ray Data once failed such a job as stalled)."""
    import pyarrow as pa

    from datagen.sources import load_source

    registry.write("prompts-80", pa.table({"prompt": [f"p{i}" for i in range(80)]}))
    source = load_source(None, "prompts-80@1", 30, registry)
    blocks = source.to_ray(block_rows=10).materialize()
    assert blocks.count() == 30
    sizes = [b.num_rows for b in blocks.iter_batches(batch_size=None, batch_format="pyarrow")]
    assert blocks.num_blocks() == 3 and sizes == [10, 10, 10]


def test_the_stall_timeout_is_positive_or_never() -> None:
    from pydantic import ValidationError

    from datagen.spec import RaySpec

    assert RaySpec().stall_timeout_s == 6 * 3600 and RaySpec(stall_timeout_s=-1).stall_timeout_s == -1
    with pytest.raises(ValidationError, match="above 0, or -1 for never"):
        RaySpec(stall_timeout_s=0)
