"""What the viewer reads from Lance: pages of rows, text search, column histograms.

Every read is pushed down to Lance (projection, `--where` filter, offset and limit), so a page
of a million-row version reads one page of rows plus the filter's columns. Search streams the
searched columns batch by batch and stops once it has the page asked for; nothing ever holds a
whole version in memory except one column at a time for a histogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datasets_registry.columns import is_message_list, is_number, is_string
from viewer.errors import ViewerError

PAGE_SIZE = 100
BINS = 12
CATEGORY_LIMIT = 20
"""A string column counts as categorical when a sample of it holds at most this many values."""
CATEGORY_PROBE_ROWS = 2000


def quote_identifier(name: str) -> str:
    """A column name for a Lance SQL filter: each dotted part in backticks."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))


def quote_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def combine(where: str | None, clause: str | None) -> str | None:
    """`where AND clause`, either side optional."""
    parts = [part for part in (where, clause) if part]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else " AND ".join(f"({part})" for part in parts)


def _read(dataset: lance.LanceDataset, what: str, where: str | None, **kwargs: object) -> pa.Table:
    """`dataset.to_table` that reports a bad filter as a ViewerError."""
    try:
        return dataset.to_table(filter=where, **kwargs)  # type: ignore[arg-type]
    except (ValueError, OSError) as err:
        raise ViewerError(f"cannot read {what} with filter {where!r}: {err}") from err


@dataclass(frozen=True)
class Page:
    """One page of rows and where it sits among the matching rows."""

    rows: pa.Table
    page: int
    size: int
    total: int
    """Matching rows; with text search, the rows found so far (see `exact`)."""
    exact: bool
    """False when a text search stopped scanning early: `total` is then a lower bound."""

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def has_next(self) -> bool:
        return (self.page + 1) * self.size < self.total


def search_columns(schema: pa.Schema) -> list[str]:
    """Columns that text search looks in: strings and conversations (their `content`)."""
    return [f.name for f in schema if is_string(f.type) or is_message_list(f.type)]


def _matches(column: pa.ChunkedArray | pa.Array, needle: str) -> np.ndarray:
    """Per row, whether `column` (a string or a message list) contains `needle`, ignoring case."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if is_message_list(column.type):
        contents = pc.struct_field(pc.list_flatten(column), "content")
        hits = pc.fill_null(pc.match_substring(contents, needle, ignore_case=True), False)
        parents = pc.list_parent_indices(column).to_numpy()
        found = np.zeros(len(column), dtype=bool)
        found[parents[hits.to_numpy(zero_copy_only=False)]] = True
        return found
    hits = pc.fill_null(pc.match_substring(column, needle, ignore_case=True), False)
    return hits.to_numpy(zero_copy_only=False)


def read_page(
    dataset: lance.LanceDataset,
    *,
    where: str | None = None,
    search: str | None = None,
    page: int = 0,
    size: int = PAGE_SIZE,
) -> Page:
    """Rows `page * size` to `(page + 1) * size` of those matching `where` and `search`.

    Without `search`, Lance counts the matches and reads the page by offset and limit. With
    it, the searched columns stream in batches (after `where`), and the scan stops one row past
    the page asked for, so a match near the start costs little however large the version.
    """
    page = max(0, page)
    if not search:
        try:
            total = dataset.count_rows(filter=where)
        except (ValueError, OSError) as err:
            raise ViewerError(f"cannot count rows with filter {where!r}: {err}") from err
        rows = _read(dataset, "rows", where, offset=page * size, limit=size)
        return Page(rows, page, size, total, exact=True)
    columns = search_columns(dataset.schema)
    if not columns:
        raise ViewerError("text search needs a string or conversation column, and this version has none")
    wanted = (page + 1) * size + 1
    offsets: list[np.ndarray] = []
    found = 0
    exact = True
    try:
        batches = dataset.to_batches(columns=["_rowoffset", *columns], filter=where, batch_size=8192)
        for batch in batches:
            hit = np.zeros(batch.num_rows, dtype=bool)
            for name in columns:
                hit |= _matches(batch.column(name), search)
            if hit.any():
                offsets.append(batch.column("_rowoffset").to_numpy()[hit])
                found += int(hit.sum())
            if found >= wanted:
                exact = False
                break
    except (ValueError, OSError) as err:
        raise ViewerError(f"cannot search with filter {where!r}: {err}") from err
    matched = np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.uint64)
    picked = matched[page * size : (page + 1) * size]
    rows = dataset.take([int(o) for o in picked]) if len(picked) else dataset.schema.empty_table()
    return Page(rows, page, size, found, exact=exact)


@dataclass(frozen=True)
class Bar:
    """One bar of a histogram: its label, its count and the filter clause that selects it."""

    label: str
    count: int
    clause: str


@dataclass(frozen=True)
class ColumnHistogram:
    """Counts of one column's values over the rows matching a filter."""

    column: str
    kind: str
    """"numeric", "category" or "length" (characters of a string)."""
    bars: list[Bar]
    count: int
    nulls: int
    other: int = 0
    """Rows outside the bars: category values beyond the shown ones, NaN and infinities."""
    notes: list[str] = field(default_factory=list)


def _literal(value: float, integer: bool) -> str:
    if integer:
        return str(int(value))
    text = format(Decimal(repr(float(value))), "f")
    return text if "." in text else text + ".0"


def _short(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.4g}"


def numeric_bars(expr: str, values: np.ndarray, integer: bool, bins: int = BINS) -> list[Bar]:
    """Equal-width bars over finite `values`, each with the clause that selects its range.

    Integer columns get integer edges (Lance does not compare an integer column with a float
    literal), and one bar per value when the range is narrower than `bins`.
    """
    if len(values) == 0:
        return []
    low, high = float(values.min()), float(values.max())
    if integer:
        low_i, high_i = int(low), int(high)
        width = max(1, math.ceil((high_i - low_i + 1) / bins))
        starts = list(range(low_i, high_i + 1, width))
        counts = np.bincount(((values - low_i) // width).astype(np.int64), minlength=len(starts))
        bars = []
        for start, count in zip(starts, counts.tolist(), strict=False):
            stop = start + width - 1
            if width == 1:
                label, clause = f"{start:,}", f"{expr} = {start}"
            else:
                label, clause = f"{start:,}–{stop:,}", f"{expr} >= {start} AND {expr} <= {stop}"
            bars.append(Bar(label, count, clause))
        return bars
    if low == high:
        return [Bar(_short(low), len(values), f"{expr} = {_literal(low, False)}")]
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    bars = []
    for i, count in enumerate(counts.tolist()):
        lo, hi = float(edges[i]), float(edges[i + 1])
        last = i == len(counts) - 1
        upper = f"{expr} <= {_literal(hi, False)}" if last else f"{expr} < {_literal(hi, False)}"
        label = f"[{_short(lo)}, {_short(hi)}{']' if last else ')'}"
        bars.append(Bar(label, count, f"{expr} >= {_literal(lo, False)} AND {upper}"))
    return bars


def histogram_columns(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    """Columns (and numeric fields of top-level structs, as `a.b`) a histogram can be drawn of."""
    out: list[tuple[str, pa.DataType]] = []
    for column in schema:
        if column.name.startswith("_") or column.name == "id":  # ids are unique: nothing to count
            continue
        if is_number(column.type) or is_string(column.type) or pa.types.is_boolean(column.type):
            out.append((column.name, column.type))
        elif pa.types.is_struct(column.type):
            for i in range(column.type.num_fields):
                sub = column.type.field(i)
                if is_number(sub.type) or pa.types.is_boolean(sub.type):
                    out.append((f"{column.name}.{sub.name}", sub.type))
    return out


def _column_values(dataset: lance.LanceDataset, expression: str, where: str | None) -> pa.Array:
    """One SQL expression over the rows matching `where` (a column, a struct field, a length).

    Lance evaluates the expression while it scans, so the lengths of a text column arrive as
    integers without the text ever reaching Python.
    """
    table = _read(dataset, expression, where, columns={"value": expression})
    column = table.column(0).combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column


def column_histogram(
    dataset: lance.LanceDataset, name: str, type_: pa.DataType, where: str | None, bins: int = BINS
) -> ColumnHistogram | None:
    """A histogram of column `name` over the rows matching `where`, or None if it has no shape.

    Numbers get equal-width bars; strings with few distinct values (in a probe of the first
    rows) one bar per value, other strings bars of their length in characters; booleans two bars.
    """
    expr = quote_identifier(name)
    if is_string(type_):
        probe = _read(
            dataset, f"column {name!r}", None, columns=[name.split(".")[0]], limit=CATEGORY_PROBE_ROWS
        )
        if pc.count_distinct(probe.column(0)).as_py() > CATEGORY_LIMIT:
            lengths = _column_values(dataset, f"character_length({expr})", where)
            nulls = lengths.null_count
            values = lengths.drop_null().to_numpy(zero_copy_only=False)
            bars = numeric_bars(f"character_length({expr})", values, integer=True, bins=bins)
            return ColumnHistogram(name, "length", bars, len(values), nulls)
    values = _column_values(dataset, expr, where)
    nulls = values.null_count
    present = values.drop_null()
    if is_string(type_) or pa.types.is_boolean(type_):
        counted = pc.value_counts(present).to_pylist()
        counted.sort(key=lambda item: (-item["counts"], str(item["values"])))
        shown = counted[:CATEGORY_LIMIT]
        bars = []
        for item in shown:
            value = item["values"]
            literal = ("TRUE" if value else "FALSE") if isinstance(value, bool) else quote_string(value)
            bars.append(Bar(str(value), item["counts"], f"{expr} = {literal}"))
        other = sum(item["counts"] for item in counted[CATEGORY_LIMIT:])
        return ColumnHistogram(name, "category", bars, len(present), nulls, other)
    numbers = present.to_numpy(zero_copy_only=False)
    integer = pa.types.is_integer(type_)
    if not integer:
        finite = np.isfinite(numbers)
        other = int((~finite).sum())
        numbers = numbers[finite]
    else:
        other = 0
    bars = numeric_bars(expr, numbers, integer, bins)
    return ColumnHistogram(name, "numeric", bars, len(present), nulls, other)
