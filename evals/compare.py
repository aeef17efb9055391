"""Compare stored models on their latest evaluation runs: a table, warnings, and a plot.

    comparison = compare_models(store, ["start", "expert", "soup"], suites=["humaneval"])
    print(format_table(comparison))
    plot_comparison(comparison, Path("compare.png"))

Each model contributes its newest run of each suite (`evals.results.latest_runs`). A row is one
metric of one suite; a cell is the value ± stderr. The first model is the reference: a cell is
marked `+` where that model beats the first by more than one combined standard error
(sqrt(se_a² + se_b²), the standard error of the difference of two independent means), `-` where
it is worse by as much, in the metric's own direction (`higher_is_better`). Runs of one suite
measured on different evaluation sets (`eval_set` identities) or different item limits are not
comparable; the comparison says so in its warnings instead of refusing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.base import EvalError, Metric
from evals.results import StoredRun, latest_runs
from model_store import ModelStore

BETTER, WORSE = "+", "-"


@dataclass
class ComparisonRow:
    """One metric of one suite across the models: a Metric (None: not measured) and a mark each."""

    suite: str
    metric: str
    higher_is_better: bool
    cells: list[Metric | None]
    marks: list[str]

    @property
    def label(self) -> str:
        return f"{self.suite}/{self.metric}"


@dataclass
class Comparison:
    """Models side by side: the rows, and what makes some cells not comparable."""

    models: list[str]
    rows: list[ComparisonRow]
    warnings: list[str] = field(default_factory=list)
    runs: dict[str, dict[str, StoredRun]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as None)."""
        return {
            "models": self.models,
            "rows": [
                {
                    "suite": row.suite,
                    "metric": row.metric,
                    "higher_is_better": row.higher_is_better,
                    "cells": {
                        model: None if cell is None else _finite(cell.as_dict()) | {"mark": mark}
                        for model, cell, mark in zip(self.models, row.cells, row.marks, strict=True)
                    },
                }
                for row in self.rows
            ],
            "runs": {
                model: {suite: run.id for suite, run in runs.items()} for model, runs in self.runs.items()
            },
            "warnings": self.warnings,
        }


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def mark(reference: Metric | None, other: Metric | None, higher_is_better: bool) -> str:
    """`+` if `other` beats `reference` by more than one combined stderr, `-` if it loses by as
    much, "" otherwise (or when either is missing or not a number)."""
    if reference is None or other is None:
        return ""
    values = (reference.value, reference.stderr, other.value, other.stderr)
    if any(v is None or math.isnan(v) for v in values):
        return ""
    difference = other.value - reference.value
    if not higher_is_better:
        difference = -difference
    combined = math.hypot(reference.stderr, other.stderr)
    if difference > combined:
        return BETTER
    if difference < -combined:
        return WORSE
    return ""


def compare_models(
    store: ModelStore, models: Sequence[str], suites: Sequence[str] | None = None
) -> Comparison:
    """The latest run of each suite of each model, side by side.

    Args:
        store: The model store holding the models and their evaluation logs.
        models: Stored model names; the first is the reference of the marks.
        suites: Only these suites (default: every suite any of the models was evaluated on).

    Raises:
        ModelStoreError: A model is not stored.
        EvalError: No models, the same model twice, or no run of the asked suites at all.
    """
    if not models:
        raise EvalError("compare needs at least one model")
    repeated = sorted({m for m in models if list(models).count(m) > 1})
    if repeated:
        raise EvalError(f"compare: {', '.join(repeated)} named more than once")
    runs = {model: {run.suite: run for run in latest_runs(store, model)} for model in models}
    order: list[str] = []
    for model in models:
        order += [suite for suite in runs[model] if suite not in order]
    if suites:
        missing = [suite for suite in suites if suite not in order]
        if len(missing) == len(suites):
            measured = ", ".join(order) or "none"
            raise EvalError(
                f"none of {', '.join(models)} has a run of {', '.join(suites)}; suites measured: {measured}"
            )
        order = [suite for suite in suites if suite in order]
    if not order:
        raise EvalError(f"none of {', '.join(models)} has been evaluated (`assay eval model NAME`)")
    runs = {model: {s: r for s, r in by_suite.items() if s in order} for model, by_suite in runs.items()}

    rows: list[ComparisonRow] = []
    warnings: list[str] = []
    for suite in order:
        names: list[str] = []
        for model in models:
            run = runs[model].get(suite)
            names += [m.name for m in (run.metrics if run else []) if m.name not in names]
        for name in names:
            cells = [_metric(runs[model].get(suite), name) for model in models]
            direction = next((c.higher_is_better for c in cells if c is not None), True)
            marks = [""] + [mark(cells[0], cell, direction) for cell in cells[1:]]
            rows.append(ComparisonRow(suite, name, direction, cells, marks))
        warnings += _suite_warnings(suite, models, runs)
    return Comparison(list(models), rows, warnings, runs)


def _metric(run: StoredRun | None, name: str) -> Metric | None:
    if run is None:
        return None
    return next((metric for metric in run.metrics if metric.name == name), None)


def _suite_warnings(suite: str, models: Sequence[str], runs: dict[str, dict[str, StoredRun]]) -> list[str]:
    """What makes one suite's runs of these models not comparable."""
    present = [model for model in models if suite in runs[model]]
    warnings = []
    absent = [model for model in models if suite not in runs[model]]
    if absent:
        warnings.append(f"{suite}: no run for {', '.join(absent)}")
    sets = {model: runs[model][suite].eval_set for model in present}
    if len(set(sets.values())) > 1:
        listed = "; ".join(f"{model}: {eval_set}" for model, eval_set in sets.items())
        warnings.append(f"{suite}: measured on different evaluation sets ({listed})")
    limits = {model: runs[model][suite].settings.get("limit") for model in present}
    if len(set(limits.values())) > 1:
        listed = "; ".join(f"{model}: {limit or 'all'}" for model, limit in limits.items())
        warnings.append(f"{suite}: measured with different item limits ({listed})")
    return warnings


def format_cell(metric: Metric | None, mark_: str = "") -> str:
    """`value ± stderr` with its mark; `-` for a metric not measured or not a number."""
    if metric is None or metric.value is None or math.isnan(metric.value):
        return "-"
    text = f"{metric.value:.3f}"
    if metric.stderr is not None and not math.isnan(metric.stderr):
        text += f" ± {metric.stderr:.3f}"
    return f"{text} {mark_}" if mark_ else text


def table_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Column headers and rows of the table: metric, its direction, n, then one cell per model."""
    columns = ["metric", "better", *comparison.models]
    rows = []
    for row in comparison.rows:
        direction = "higher" if row.higher_is_better else "lower"
        cells = [format_cell(cell, m) for cell, m in zip(row.cells, row.marks, strict=True)]
        rows.append([row.label, direction, *cells])
    return columns, rows


def format_table(comparison: Comparison) -> str:
    """The comparison as aligned plain text, its legend and warnings below."""
    columns, rows = table_rows(comparison)
    widths = [max(len(str(line[i])) for line in [columns, *rows]) for i in range(len(columns))]
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
             for line in [columns, *rows]]  # fmt: skip
    lines.append(legend(comparison))
    lines += [f"warning: {warning}" for warning in comparison.warnings]
    return "\n".join(lines)


def legend(comparison: Comparison) -> str:
    """What the marks mean."""
    return (
        f"{BETTER} / {WORSE}: better / worse than {comparison.models[0]} by more than one combined "
        "standard error (sqrt(se_a² + se_b²))"
    )


def plot_comparison(comparison: Comparison, path: Path | None = None, *, columns: int = 3) -> Any:
    """One panel per metric, a bar per model with its standard error as an error bar.

    Args:
        comparison: What to draw.
        path: Where to write the PNG (None: only return the figure).
        columns: Panels per row.

    Returns:
        The matplotlib Figure, one Axes per metric.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    panels = len(comparison.rows)
    columns = max(1, min(columns, panels))
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    positions = list(range(len(comparison.models)))
    for index, row in enumerate(comparison.rows):
        ax = axes[index // columns][index % columns]
        values = [_number(cell.value) if cell else math.nan for cell in row.cells]
        errors = [_number(cell.stderr) if cell else 0.0 for cell in row.cells]
        errors = [0.0 if math.isnan(e) else e for e in errors]
        ax.bar(positions, [0.0 if math.isnan(v) else v for v in values], yerr=errors, capsize=4,
               color=[colours[i % len(colours)] for i in positions])  # fmt: skip
        for position, value, error, m in zip(positions, values, errors, row.marks, strict=True):
            if math.isnan(value):
                ax.text(position, 0, "n/a", ha="center", va="bottom", fontsize=8)
            elif m:  # above the error bar, where it stays readable
                ax.text(position, value + error, m, ha="center", va="bottom", fontsize=13, fontweight="bold")
        direction = "higher is better" if row.higher_is_better else "lower is better"
        ax.set_title(f"{row.label}\n({direction})", fontsize=9)
        ax.set_xticks(positions, comparison.models, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)  # headroom for the marks above the error bars
    for index in range(panels, rows * columns):
        figure.delaxes(axes[index // columns][index % columns])
    figure.suptitle("error bars: one standard error; " + legend(comparison), fontsize=8)
    figure.tight_layout()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=110)
    plt.close(figure)
    return figure


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)
