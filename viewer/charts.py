"""Geometry of the server-drawn SVG charts: histogram bars and the lineage graph.

Only numbers and plain strings come out of here; the templates write the SVG and escape every
label. Drawing on the server keeps the browser's work to showing a page, and makes each bar a
plain link, so clicking one filters the rows without any script.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
