"""Statistics of a dataset version: columns and nulls, languages, score histograms, lengths.

Computed with polars over Lance, one top-level column at a time: each read projects a single
column (Lance pushes the projection down, so untouched columns are never read), and peak memory
is that of the largest column rather than of the whole table. Measured with pylance 14,
`LanceDataset.to_table(columns=[c])` and `pl.scan_pyarrow_dataset(ds).select(c)` read the same
bytes in the same time; the direct read is used because it states the projection explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lance
import numpy as np
import polars as pl
import pyarrow as pa
from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from datasets_registry.registry import DatasetVersion

SCORE_COLUMN_NAMES = frozenset({"reward", "pass_rate", "label", "score"})
"""Top-level columns whose numbers are score-like (besides `*_score` and the `scores` struct)."""

PERCENTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class ColumnStats:
    """One top-level column: its Arrow type and how many of its values are null."""

    name: str
    type: str
    non_null: int
    nulls: int


@dataclass(frozen=True)
class Histogram:
    """Equal-width histogram of one score-like value, e.g. `scores.ifeval_best` or `reward`.

    Bin `i` holds values `v` with `edges[i] <= v < edges[i + 1]`; the last bin also holds
    `edges[-1]` (numpy's convention). Null, NaN and infinite values are left out: `counts`
    sums to `count`, which is the number of non-null values less `non_finite`.
    """

    name: str
    edges: list[float]
    counts: list[int]
    count: int
    nulls: int
    non_finite: int
    mean: float | None


@dataclass(frozen=True)
class LengthStats:
    """Percentiles of a length over the non-null values of a column.

    `measure` is "chars" (characters of a string, or of all `content` of a message list) or
    "turns" (messages in a message list). Percentiles interpolate linearly between values.
    """

    column: str
    measure: str
    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: int | None
    mean: float | None


@dataclass(frozen=True)
class DatasetStats:
    """Statistics of one dataset version."""

    ref: str
    row_count: int
    columns: list[ColumnStats]
    languages: dict[str, int] | None
    """Rows per value of `language`, most frequent first; None if there is no such column."""
    histograms: list[Histogram] = field(default_factory=list)
    lengths: list[LengthStats] = field(default_factory=list)


def is_score_column(name: str) -> bool:
    """Whether a top-level numeric column called `name` holds a score-like value."""
    return name in SCORE_COLUMN_NAMES or name.endswith("_score")


def _is_number(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_)


def _is_string(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)


def is_message_list(type_: pa.DataType) -> bool:
    """Whether `type_` is a list of structs with a string `content` field (a conversation)."""
    if not (pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_list_view(type_)):
        return False
    item = type_.value_type
    if not pa.types.is_struct(item) or item.get_field_index("content") < 0:
        return False
    return _is_string(item.field("content").type)


def score_columns(schema: pa.Schema) -> list[str]:
    """Top-level columns of `schema` that hold score-like numbers: a `scores` struct with
    numeric fields, and numeric columns named reward, pass_rate, label, score or `*_score`."""
    names = []
    for column in schema:
        if column.name == "scores" and pa.types.is_struct(column.type):
            if any(_is_number(column.type.field(i).type) for i in range(column.type.num_fields)):
                names.append(column.name)
        elif is_score_column(column.name) and _is_number(column.type):
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


def histogram(name: str, values: pl.Series, bins: int) -> Histogram:
    """Equal-width histogram of `values` (float64) over their finite range."""
    present = values.drop_nulls()
    finite = present.filter(present.is_finite())
    non_finite = len(present) - len(finite)
    if finite.is_empty():
        return Histogram(name, [], [], 0, values.null_count(), non_finite, None)
    low, high = float(finite.min()), float(finite.max())  # type: ignore[arg-type]
    if low == high:
        edges, counts = [low, high], [len(finite)]
    else:
        edges = np.linspace(low, high, bins + 1).tolist()
        # search_sorted on the edges gives numpy's bin placement exactly, rounding included.
        index = pl.Series(edges).search_sorted(finite, side="right").cast(pl.Int64) - 1
        index = index.clip(0, bins - 1)
        counted = index.value_counts()
        by_bin = dict(zip(counted[index.name].to_list(), counted["count"].to_list(), strict=True))
        counts = [int(by_bin.get(i, 0)) for i in range(bins)]
    return Histogram(name, edges, counts, len(finite), values.null_count(), non_finite, finite_mean(finite))


def length_stats(column: str, measure: str, lengths: pl.Series) -> LengthStats:
    """Percentiles, max and mean of non-null integer `lengths`."""
    lengths = lengths.drop_nulls()
    if lengths.is_empty():
        return LengthStats(column, measure, 0, None, None, None, None, None)
    p50, p90, p99 = (float(lengths.quantile(q, "linear")) for q in PERCENTILES)  # type: ignore[arg-type]
    return LengthStats(
        column,
        measure,
        len(lengths),
        p50,
        p90,
        p99,
        int(lengths.max()),
        float(lengths.mean()),  # type: ignore[arg-type]
    )


def _message_lengths(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Total characters of all `content` per conversation, and turns per conversation."""
    chars = values.list.eval(pl.element().struct.field("content").str.len_chars()).list.sum()
    return chars.cast(pl.Int64), values.list.len().cast(pl.Int64)


def compute_stats(version: DatasetVersion, *, bins: int = 10) -> DatasetStats:
    """Statistics of a dataset version, read one column at a time from Lance.

    Args:
        version: The dataset version.
        bins: Number of equal-width bins of each score histogram.

    Returns:
        Row count; type, non-null and null count of every column; rows per `language`;
        histograms of score-like values (numeric fields of a `scores` struct, and numeric
        columns named reward, pass_rate, label, score or `*_score`); percentiles of the
        characters of string columns, and of characters and turns of message-list columns.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    dataset = version.to_lance()
    schema = dataset.schema
    scored = set(score_columns(schema))
    columns: list[ColumnStats] = []
    languages: dict[str, int] | None = None
    histograms: list[Histogram] = []
    lengths: list[LengthStats] = []
    row_count = dataset.count_rows()
    for column in schema:
        values = read_column(dataset, column.name)
        nulls = values.null_count()
        columns.append(ColumnStats(column.name, str(column.type), len(values) - nulls, nulls))
        if column.name == "language":
            counted = values.cast(pl.String).drop_nulls().value_counts(sort=True, name="rows")
            counted = counted.sort(["rows", "language"], descending=[True, False])
            languages = dict(zip(counted["language"].to_list(), counted["rows"].to_list(), strict=True))
        if column.name in scored:
            histograms += [histogram(n, s, bins) for n, s in score_values(column.name, values).items()]
        if _is_string(column.type):
            lengths.append(length_stats(column.name, "chars", values.str.len_chars()))
        elif is_message_list(column.type):
            chars, turns = _message_lengths(values)
            lengths += [length_stats(column.name, "chars", chars), length_stats(column.name, "turns", turns)]
        del values  # the next column is read only after this one is released
    return DatasetStats(version.ref, row_count, columns, languages, histograms, lengths)


BLOCKS = " ▏▎▍▌▋▊▉█"
"""Eighths of a character cell, so bars resolve 1/8 of a cell."""


def block_bar(value: float, maximum: float, width: int) -> str:
    """A bar of Unicode blocks `width` cells long at `maximum`."""
    if maximum <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / maximum * width * 8))  # a non-empty bin always shows
    full, rest = divmod(eighths, 8)
    return "█" * full + (BLOCKS[rest] if rest else "")


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def render_histogram(hist: Histogram, width: int = 40) -> RenderableType:
    """One line per bin: its range, a block bar and the count."""
    title = f"{hist.name}  (n={hist.count:,}, mean={_number(hist.mean)}"
    title += (
        f", nulls={hist.nulls:,}" + (f", non-finite={hist.non_finite:,}" if hist.non_finite else "") + ")"
    )
    if not hist.counts:
        return Panel(Text("no finite values", style="dim"), title=title, title_align="left", expand=False)
    lines = Text()
    labels = [
        f"[{_number(lo)}, {_number(hi)}{']' if i == len(hist.counts) - 1 else ')'}"
        for i, (lo, hi) in enumerate(zip(hist.edges, hist.edges[1:], strict=False))
    ]
    label_width = max(len(label) for label in labels)
    peak = max(hist.counts)
    for label, count in zip(labels, hist.counts, strict=True):
        lines.append(f"{label:>{label_width}} ", style="dim")
        lines.append(f"{block_bar(count, peak, width):<{width}}", style="cyan")
        lines.append(f" {count:,}\n")
    lines.rstrip()
    return Panel(lines, title=title, title_align="left", expand=False)


def render_stats(stats: DatasetStats) -> list[RenderableType]:
    """Rich renderables of `stats`: columns and nulls, languages, lengths, then histograms."""
    out: list[RenderableType] = []
    columns = Table(title=f"{stats.ref}: {stats.row_count:,} rows", title_justify="left")
    for header in ("column", "type", "non-null", "nulls", "null %"):
        columns.add_column(header, justify="left" if header in ("column", "type") else "right")
    for col in stats.columns:
        share = col.nulls / stats.row_count * 100 if stats.row_count else 0.0
        columns.add_row(col.name, col.type, f"{col.non_null:,}", f"{col.nulls:,}", f"{share:.1f}")
    out.append(columns)
    if stats.languages is not None:
        languages = Table(title="language", title_justify="left")
        languages.add_column("language")
        languages.add_column("rows", justify="right")
        languages.add_column("share", justify="right")
        languages.add_column("")
        total = sum(stats.languages.values()) or 1
        peak = max(stats.languages.values(), default=0)
        for code, rows in stats.languages.items():
            bar = Text(block_bar(rows, peak, 20), style="cyan")
            languages.add_row(code, f"{rows:,}", f"{rows / total * 100:.1f}%", bar)
        out.append(languages)
    if stats.lengths:
        lengths = Table(title="lengths", title_justify="left")
        for header in ("column", "measure", "count", "p50", "p90", "p99", "max", "mean"):
            lengths.add_column(header, justify="left" if header in ("column", "measure") else "right")
        for row in stats.lengths:
            cells = (row.count, row.p50, row.p90, row.p99, row.max, row.mean)
            lengths.add_row(row.column, row.measure, *(_number(v, 6) for v in cells))
        out.append(lengths)
    out += [render_histogram(hist) for hist in stats.histograms]
    return out
