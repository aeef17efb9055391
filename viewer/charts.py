"""Geometry of the server-drawn SVG charts: histogram bars, the lineage graph, and evaluation
results (metric bars with error bars, metric history).

Only numbers and plain strings come out of here; the templates write the SVG and escape every
label. Drawing on the server keeps the browser's work to showing a page, and makes each bar a
plain link, so clicking one filters the rows without any script.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets_registry.lineage import Lineage, LineageNode
from viewer.queries import ColumnHistogram

BAR_AREA_WIDTH = 300
BAR_HEIGHT = 16
BAR_GAP = 3
LABEL_WIDTH = 120


@dataclass(frozen=True)
class BarShape:
    """One horizontal bar: its row, its length, its label, count and filter clause."""

    y: int
    width: float
    label: str
    count: int
    clause: str


def bar_shapes(hist: ColumnHistogram) -> list[BarShape]:
    """Horizontal bars, longest at `BAR_AREA_WIDTH`, a non-empty bar at least 1 px long."""
    peak = max((bar.count for bar in hist.bars), default=0)
    shapes = []
    for i, bar in enumerate(hist.bars):
        width = 0.0 if peak == 0 or bar.count == 0 else max(1.0, bar.count / peak * BAR_AREA_WIDTH)
        shapes.append(BarShape(i * (BAR_HEIGHT + BAR_GAP), round(width, 1), bar.label, bar.count, bar.clause))
    return shapes


NODE_WIDTH = 230
NODE_LINE = 16
COLUMN_GAP = 70
ROW_GAP = 22


@dataclass
class GraphNode:
    """A box of the lineage graph: a dataset version, a missing version, a model or a file."""

    key: str
    kind: str
    """"dataset", "missing", "model" or "file"."""
    lines: list[str]
    depth: int
    ref: str | None = None
    """The dataset reference a dataset box links to."""
    x: int = 0
    y: int = 0
    height: int = 0


@dataclass
class Graph:
    """Boxes, and edges from a source box to the box made from it, laid out left to right."""

    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[tuple[int, int, int, int]] = field(default_factory=list)
    width: int = 0
    height: int = 0


def _shorten(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lineage_layout(root: LineageNode, model_ref: Callable[[str], str | None] | None = None) -> Graph:
    """Lay out the lineage tree of `root`: sources on the left, `root` on the right.

    A version reached twice (a diamond) is drawn once. `model_ref` maps a model identity to a
    store name to link, or None.
    """
    nodes: dict[str, GraphNode] = {}
    links: list[tuple[str, str]] = []

    def add(node: GraphNode) -> GraphNode:
        existing = nodes.get(node.key)
        if existing is None:
            nodes[node.key] = node
            return node
        existing.depth = max(existing.depth, node.depth)
        return existing

    def visit(tree: LineageNode, depth: int) -> str:
        key = f"dataset:{tree.ref}"
        lineage: Lineage | None = tree.lineage
        if lineage is None:
            add(GraphNode(key, "missing", [tree.ref, "not in this registry"], depth))
            return key
        lines = [tree.ref]
        if lineage.job_id:
            lines.append(_shorten(f"job {lineage.job_id}"))
        if lineage.pipeline:
            lines.append(_shorten(f"pipeline {lineage.pipeline}"))
        if lineage.spec_hash:
            lines.append(f"spec {lineage.spec_hash[:16]}")
        add(GraphNode(key, "dataset", lines, depth, ref=tree.ref))
        for model in lineage.models:
            model_key = f"model:{model}"
            add(GraphNode(model_key, "model", ["model", _shorten(model)], depth + 1, ref=model))
            links.append((model_key, key))
        for file in tree.files:
            file_key = f"file:{file}"
            path = file.removeprefix("file:").split("#", 1)[0]
            add(GraphNode(file_key, "file", ["file", _shorten(path)], depth + 1))
            links.append((file_key, key))
        for parent in tree.parents:
            links.append((visit(parent, depth + 1), key))
        return key

    visit(root, 0)
    graph = Graph()
    max_depth = max(node.depth for node in nodes.values())
    columns: dict[int, list[GraphNode]] = {}
    for node in nodes.values():
        columns.setdefault(node.depth, []).append(node)
    for depth, column in columns.items():
        y = 10
        for node in column:
            node.x = 10 + (max_depth - depth) * (NODE_WIDTH + COLUMN_GAP)
            node.y = y
            node.height = 10 + NODE_LINE * len(node.lines)
            y += node.height + ROW_GAP
        graph.height = max(graph.height, y)
    graph.nodes = list(nodes.values())
    graph.width = 20 + (max_depth + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    for source, target in dict.fromkeys(links):
        a, b = nodes[source], nodes[target]
        graph.edges.append((a.x + NODE_WIDTH, a.y + a.height // 2, b.x, b.y + b.height // 2))
    if model_ref is not None:
        for node in graph.nodes:
            if node.kind == "model" and node.ref is not None:
                node.ref = model_ref(node.ref)
    return graph


# --- evaluation results -----------------------------------------------------------------------

METRIC_LABEL_WIDTH = 180
METRIC_AREA_WIDTH = 300
METRIC_ROW = 22
HISTORY_WIDTH = 300
HISTORY_HEIGHT = 90
HISTORY_PAD = 8


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class MetricBar:
    """One metric of a run: a bar from the zero line to its value, and its error bar."""

    name: str
    value: float | None
    stderr: float | None
    n: int | None
    higher_is_better: bool
    y: int
    x: float
    """Left end of the bar (the zero line, or the value when it is negative)."""
    width: float
    low_x: float | None
    """Ends of the error bar (value - stderr, value + stderr); None without a stderr."""
    high_x: float | None
    end_x: float
    """Where the value's label starts."""


@dataclass(frozen=True)
class MetricChart:
    """Bars with error bars on one shared scale, which includes zero."""

    bars: list[MetricBar]
    zero_x: float
    width: int
    height: int


def _metric_fields(metric: Any) -> tuple[str, float | None, float | None, int | None, bool]:
    if not isinstance(metric, dict):
        return str(metric), None, None, None, True
    n = metric.get("n")
    return (
        str(metric.get("name", "?")),
        finite(metric.get("value")),
        finite(metric.get("stderr")),
        n if isinstance(n, int) and not isinstance(n, bool) else None,
        metric.get("higher_is_better") is not False,
    )


def metric_chart(metrics: list[Any]) -> MetricChart:
    """Geometry of a run's metrics (JSON objects with name, value, stderr, n, higher_is_better):
    one horizontal bar each, with value ± stderr drawn as an error bar."""
    rows = [_metric_fields(m) for m in metrics]
    ends = [0.0]
    for _, value, stderr, _, _ in rows:
        if value is not None:
            ends += [value - (stderr or 0.0), value + (stderr or 0.0)]
    low, high = min(ends), max(ends)
    span = (high - low) or 1.0

    def at(v: float) -> float:
        return round(METRIC_LABEL_WIDTH + (v - low) / span * METRIC_AREA_WIDTH, 1)

    zero = at(0.0)
    bars = []
    for i, (name, value, stderr, n, higher) in enumerate(rows):
        y = i * METRIC_ROW
        if value is None:
            bars.append(MetricBar(name, None, stderr, n, higher, y, zero, 0.0, None, None, zero + 4))
            continue
        x_value = at(value)
        low_x = at(value - stderr) if stderr else None
        high_x = at(value + stderr) if stderr else None
        end = max(x_value, high_x or x_value, zero) + 4
        bars.append(
            MetricBar(
                name, value, stderr, n, higher, y, min(zero, x_value), abs(x_value - zero), low_x, high_x, end
            )
        )
    width = METRIC_LABEL_WIDTH + METRIC_AREA_WIDTH + 90
    return MetricChart(bars, zero, width, max(1, len(rows)) * METRIC_ROW)


@dataclass(frozen=True)
class HistoryPoint:
    """One run's value of a metric: where it is drawn, and its error bar's ends (y)."""

    x: float
    y: float
    low_y: float | None
    high_y: float | None
    value: float
    stderr: float | None
    created_at: str


@dataclass(frozen=True)
class HistoryChart:
    """One metric over a suite's runs, oldest on the left, evenly spaced."""

    name: str
    points: list[HistoryPoint]
    polyline: str
    low: float
    high: float
    width: int = HISTORY_WIDTH + 2 * HISTORY_PAD
    height: int = HISTORY_HEIGHT + 2 * HISTORY_PAD


def history_charts(runs: list[dict[str, Any]]) -> list[HistoryChart]:
    """For each metric name in `runs` (oldest first), its value over the runs with error bars;
    runs without a finite value for a metric are left out of its chart."""
    series: dict[str, list[tuple[float, float | None, str]]] = {}
    for run in runs:
        for metric in run.get("metrics") or []:
            name, value, stderr, _, _ = _metric_fields(metric)
            if value is not None:
                series.setdefault(name, []).append((value, stderr, str(run.get("created_at") or "")))
    charts = []
    for name, values in series.items():
        ends = [v - (s or 0.0) for v, s, _ in values] + [v + (s or 0.0) for v, s, _ in values]
        low, high = min(ends), max(ends)
        span = (high - low) or 1.0

        def y_of(v: float, low: float = low, span: float = span) -> float:
            return round(HISTORY_PAD + HISTORY_HEIGHT - (v - low) / span * HISTORY_HEIGHT, 1)

        step = HISTORY_WIDTH / max(1, len(values) - 1)
        points = [
            HistoryPoint(
                x=round(HISTORY_PAD + i * step, 1),
                y=y_of(value),
                low_y=y_of(value - stderr) if stderr else None,
                high_y=y_of(value + stderr) if stderr else None,
                value=value,
                stderr=stderr,
                created_at=created,
            )
            for i, (value, stderr, created) in enumerate(values)
        ]
        polyline = " ".join(f"{p.x},{p.y}" for p in points)
        charts.append(HistoryChart(name, points, polyline, low, high))
    return charts
