"""Columns with a null-typed child (a key that is null in every row, as in IFEval's list<struct>
`kwargs` after a JSON round trip) write through the registry, from Ray blocks and from a table;
`storage.cast_table` casts them where pyarrow's `Table.cast` makes an invalid table."""

import pyarrow as pa
import pytest

from datasets_registry import Registry
from datasets_registry.storage import cast_table, normal_schema

# `unused` is null in every row, so Arrow infers it as the null type.
KWARGS_ROWS = [
    {"id": f"r{i}", "kwargs": [{"n": i, "unused": None}, {"n": None, "unused": None}] if i % 3 else None}
    for i in range(6)
]


def kwargs_table() -> pa.Table:
    return pa.Table.from_struct_array(pa.array(KWARGS_ROWS))


def with_element_items(table: pa.Table) -> pa.Table:
    """`table` with its list items named `element`, as Parquet names them (built, not cast)."""
    kwargs = table.column("kwargs").combine_chunks()
    item = pa.field("element", kwargs.type.value_type)
    renamed = pa.ListArray.from_arrays(
        kwargs.offsets, kwargs.values, type=pa.list_(item), mask=kwargs.is_null()
    )
    return table.set_column(1, "kwargs", renamed)


def test_the_kwargs_column_has_a_null_typed_child() -> None:
    kwargs_type = kwargs_table().schema.field("kwargs").type
    assert kwargs_type.value_type.field("unused").type == pa.null()


@pytest.mark.parametrize("offset", [0, 1, 3], ids=["whole", "slice-at-1", "slice-at-3"])
def test_cast_table_keeps_rows_of_a_list_of_struct_with_a_null_child(offset: int) -> None:
    block = kwargs_table().slice(offset, 3)  # a Ray block: a slice of a bigger table
    cast = cast_table(block, normal_schema(block.schema))
    cast.validate(full=True)
    assert cast.to_pylist() == KWARGS_ROWS[offset : offset + 3]


def test_cast_table_renames_list_items_around_a_null_child() -> None:
    table = with_element_items(kwargs_table()).slice(1, 4)
    cast = cast_table(table, normal_schema(table.schema))
    cast.validate(full=True)
    assert cast.schema.field("kwargs").type.value_field.name == "item"
    assert cast.to_pylist() == KWARGS_ROWS[1:5]


def test_cast_table_fills_in_a_type_where_another_block_had_values() -> None:
    block = kwargs_table().slice(2, 3)
    kwargs_type = pa.list_(pa.struct([("n", pa.int64()), ("unused", pa.string())]))
    target = pa.schema([("id", pa.string()), ("kwargs", kwargs_type)])
    cast = cast_table(block, target)
    cast.validate(full=True)
    assert cast.schema == target and cast.to_pylist() == KWARGS_ROWS[2:5]


def test_a_ray_write_of_a_null_child_in_a_list_of_struct(registry: Registry, ray_local: None) -> None:
    import ray.data

    blocks = [kwargs_table().slice(i, 2) for i in range(0, 6, 2)]  # as a job's JSONL source
    version = registry.write("kwargs-ray", ray.data.from_arrow(blocks), kind="generic")
    read = version.to_arrow()
    assert read.schema.field("kwargs").type.value_type.field("unused").type == pa.null()
    assert sorted(read.to_pylist(), key=lambda row: row["id"]) == KWARGS_ROWS


def test_a_table_write_of_a_null_child_with_parquet_item_names(registry: Registry) -> None:
    version = registry.write("kwargs-table", with_element_items(kwargs_table()).slice(1, 5))
    assert version.to_arrow().to_pylist() == KWARGS_ROWS[1:6]


def test_a_parquet_export_of_a_null_child_keeps_every_row(registry: Registry, tmp_path) -> None:  # noqa: ANN001
    import pyarrow.parquet as pq

    from datasets_registry.transfer import export_version

    version = registry.write("kwargs-export", kwargs_table())
    path = export_version(version, "parquet", tmp_path / "kwargs.parquet")
    assert pq.read_table(path).to_pylist() == KWARGS_ROWS
