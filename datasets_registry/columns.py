"""Reading and classifying the columns of a Lance version, shared by stats and diff.

Nothing here knows the registry: stats and diff take any object with a `ref` and a
`to_lance()` (a `DatasetVersion` is one), so `registry` can offer `stats()` and `diff()`
without the modules importing each other in a circle.
"""

from __future__ import annotations

from typing import Protocol

import lance
import polars as pl
import pyarrow as pa

SCORE_COLUMN_NAMES = frozenset({"reward", "pass_rate", "label", "score"})
"""Top-level columns whose numbers are score-like (besides `*_score` and the `scores` struct)."""


class LanceVersion(Protocol):
    """A dataset version as stats and diff read it: its reference and its Lance data."""

    @property
    def ref(self) -> str:
        """The exact reference `name@version`."""
        ...

    def to_lance(self) -> lance.LanceDataset:
        """The Lance dataset checked out at this version."""
        ...


def is_score_column(name: str) -> bool:
    """Whether a top-level numeric column called `name` holds a score-like value."""
    return name in SCORE_COLUMN_NAMES or name.endswith("_score")


def is_number(type_: pa.DataType) -> bool:
    """Whether `type_` is an integer or floating-point type."""
    return pa.types.is_integer(type_) or pa.types.is_floating(type_)


def is_string(type_: pa.DataType) -> bool:
    """Whether `type_` is one of Arrow's string types."""
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)


def is_message_list(type_: pa.DataType) -> bool:
    """Whether `type_` is a list of structs with a string `content` field (a conversation)."""
    if not (pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_list_view(type_)):
        return False
    item = type_.value_type
    if not pa.types.is_struct(item) or item.get_field_index("content") < 0:
        return False
    return is_string(item.field("content").type)


def score_columns(schema: pa.Schema) -> list[str]:
    """Top-level columns of `schema` that hold score-like numbers: a `scores` struct with
    numeric fields, and numeric columns named reward, pass_rate, label, score or `*_score`."""
    names = []
    for column in schema:
        if column.name == "scores" and pa.types.is_struct(column.type):
            if any(is_number(column.type.field(i).type) for i in range(column.type.num_fields)):
                names.append(column.name)
        elif is_score_column(column.name) and is_number(column.type):
            names.append(column.name)
    return names


def score_values(name: str, values: pl.Series) -> dict[str, pl.Series]:
    """The score-like numeric series inside top-level column `name`, as float64, keyed by
    their display name (`scores.FIELD` for fields of the `scores` struct, else `name`)."""
    if name == "scores" and isinstance(values.dtype, pl.Struct):
        return {
            f"scores.{f.name}": values.struct.field(f.name).cast(pl.Float64)
            for f in values.dtype.fields
            if f.dtype.is_numeric()
        }
    if is_score_column(name) and values.dtype.is_numeric():
        return {name: values.cast(pl.Float64)}
    return {}


def finite_mean(values: pl.Series) -> float | None:
    """Mean of the finite values of a float series; None when there are none."""
    present = values.drop_nulls()
    finite = present.filter(present.is_finite())
    return None if finite.is_empty() else float(finite.mean())  # type: ignore[arg-type]


def read_column(dataset: lance.LanceDataset, name: str) -> pl.Series:
    """One column of a Lance dataset as a polars Series, reading only that column."""
    column = dataset.to_table(columns=[name]).column(0)
    if pa.types.is_dictionary(column.type):
        # Dictionaries differ between versions and fragments; compare and measure their values.
        column = column.cast(column.type.value_type)
    series = pl.from_arrow(column)
    assert isinstance(series, pl.Series)
    return series.alias(name)
