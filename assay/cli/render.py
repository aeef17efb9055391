"""Rich rendering of the registry's plain results: `assay data stats` and `assay data diff`.

The registry computes (`datasets_registry.stats`, `datasets_registry.diff`); this module only
draws, so the registry needs no console and these functions need no Lance.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

if TYPE_CHECKING:
    from datasets_registry.diff import DatasetDiff
    from datasets_registry.lineage import LineageNode
    from datasets_registry.stats import DatasetStats, Histogram

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


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _signed(value: float | None) -> Text:
    if value is None:
        return Text("-", style="dim")
    if value == 0:
        return Text("0", style="dim")
    text = f"+{_figure(value)}" if value > 0 else _figure(value)
    return Text(text, style="green" if value > 0 else "red")


def render_diff(diff: DatasetDiff) -> list[RenderableType]:
    """Rich renderables of `diff`: rows, schema changes, then old -> new figures."""
    rows = Table(title=f"{diff.old_ref} -> {diff.new_ref}: rows by id", title_justify="left")
    rows.add_column("rows")
    rows.add_column("count", justify="right")
    rows.add_column("examples (id)")
    for label, change, style in (
        ("added", diff.added, "green"),
        ("removed", diff.removed, "red"),
        ("changed", diff.changed, "yellow"),
    ):
        more = ", ..." if change.count > len(change.sample) else ""
        rows.add_row(Text(label, style=style), f"{change.count:,}", ", ".join(change.sample) + more)
    rows.add_row(Text("unchanged", style="dim"), f"{diff.unchanged:,}", "")
    notes: list[RenderableType] = []
    if diff.changed_by_column:
        by_column = ", ".join(f"{c} {n:,}" for c, n in diff.changed_by_column.items() if n)
        notes.append(Text(f"changed rows differ in: {by_column or 'no column'}"))
    if diff.uncompared_columns:
        notes.append(
            Text(
                "not compared (old values do not convert to the new type): "
                + ", ".join(diff.uncompared_columns),
                style="yellow",
            )
        )
    if diff.schema.unchanged:
        notes.append(Text("schema: unchanged", style="dim"))
    # A Group keeps the notes on lines of their own even when printed as `print(*renderables)`.
    out: list[RenderableType] = [rows, Group(*notes)]
    if not diff.schema.unchanged:
        schema = Table(title="schema changes", title_justify="left")
        for header in ("change", "column", "old type", "new type"):
            schema.add_column(header)
        for label, changes in (
            ("added", diff.schema.added),
            ("removed", diff.schema.removed),
            ("retyped", diff.schema.retyped),
        ):
            for change in changes:
                schema.add_row(label, change.name, change.old_type or "-", change.new_type or "-")
        out.append(schema)
    figures = Table(title="stats", title_justify="left")
    for header in ("figure", "old", "new", "delta"):
        figures.add_column(header, justify="left" if header == "figure" else "right")
    figures.add_row(
        "rows", _figure(diff.row_count.old), _figure(diff.row_count.new), _signed(diff.row_count.delta)
    )
    for delta in diff.null_counts:
        figures.add_row(f"nulls: {delta.name}", _figure(delta.old), _figure(delta.new), _signed(delta.delta))
    for delta in diff.means:
        figures.add_row(f"mean: {delta.name}", _figure(delta.old), _figure(delta.new), _signed(delta.delta))
    out.append(figures)
    return out


def add_lineage(tree: Tree, node: LineageNode, prefix: str = "") -> None:
    """Add a dataset version's lineage graph under `tree`: its job, pipeline and spec, models,
    files and, recursively, the versions it was made from. `prefix` labels each version
    (e.g. "dataset ")."""
    if node.lineage is None:
        tree.add(f"{prefix}[red]{node.ref}[/] (not in this registry)")
        return
    branch = tree.add(f"{prefix}[bold]{node.ref}[/]  job {node.lineage.job_id or '- (imported)'}")
    if node.lineage.pipeline:
        branch.add(f"pipeline {node.lineage.pipeline} (spec {(node.lineage.spec_hash or '-')[:16]})")
    for model in node.lineage.models:
        branch.add(f"model {model}")
    for file in node.files:
        branch.add(f"file {file}")
    for parent in node.parents:
        add_lineage(branch, parent, prefix)
