"""`assay eval compare`: stored models' latest runs side by side (value ± stderr, marks beyond one
combined stderr), warnings for runs that are not comparable, and a PNG with a panel per metric."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assay.settings import model_store_dir
from evals.base import EvalError, Metric, SuiteResult
from evals.compare import BETTER, WORSE, compare_models, format_table, mark, plot_comparison
from evals.results import store_result
from model_store import ModelLineage, ModelStore


def stored_model(store: ModelStore, tmp_path: Path, name: str) -> None:
    folder = tmp_path / f"checkpoint-{name}"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # all the store needs of a fixture model
    store.register(name, folder, kind="sft", lineage=ModelLineage())


def run(
    store: ModelStore,
    model: str,
    suite: str,
    metrics: list[Metric],
    *,
    eval_set: str = "",
    limit: int | None = None,
) -> None:
    result = SuiteResult(suite, eval_set or f"{suite}#sha256=aaaa", metrics, settings={"limit": limit})
    store_result(store, model, result, model_identity=model)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """Two fixture models: `start`, and `expert`, which beats it on pass@1 and over-refuses less."""
    store = ModelStore(model_store_dir())  # under the test's ASSAY_HOME
    for name in ("start", "expert"):
        stored_model(store, tmp_path, name)
    run(store, "start", "humaneval", [Metric("pass@1", 0.30, 0.05, 164)])  # superseded below
    run(store, "start", "humaneval", [Metric("pass@1", 0.10, 0.02, 164)])
    run(store, "expert", "humaneval", [Metric("pass@1", 0.20, 0.03, 164)])  # +0.10 > 0.036
    run(store, "start", "xstest", [Metric("over_refusal", 0.40, 0.05, 250, False),
                                   Metric("unsafe_refusal", 0.90, 0.02, 200)])  # fmt: skip
    run(store, "expert", "xstest", [Metric("over_refusal", 0.20, 0.04, 250, False),  # lower: better
                                    Metric("unsafe_refusal", 0.80, 0.03, 200)],  # -0.10 < -0.036
        limit=50)  # fmt: skip
    return store


def test_latest_runs_side_by_side_with_marks_and_warnings(store: ModelStore) -> None:
    comparison = compare_models(store, ["start", "expert"])
    cells = {row.label: row for row in comparison.rows}
    assert list(cells) == ["humaneval/pass@1", "xstest/over_refusal", "xstest/unsafe_refusal"]
    assert cells["humaneval/pass@1"].cells[0].value == 0.10  # the newest run of `start`, not the first
    assert cells["humaneval/pass@1"].marks == ["", BETTER]
    assert cells["xstest/over_refusal"].marks == ["", BETTER]  # lower is better there
    assert cells["xstest/unsafe_refusal"].marks == ["", WORSE]
    assert comparison.warnings == ["xstest: measured with different item limits (start: all; expert: 50)"]

    table = format_table(comparison)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "better", "start", "expert"]
    assert "0.100 ± 0.020" in lines[1] and "0.200 ± 0.030 +" in lines[1]
    assert lines[2].split()[1] == "lower"
    assert "0.800 ± 0.030 -" in lines[3]
    assert "better / worse than start by more than one combined standard error" in table
    assert "warning: xstest: measured with different item limits" in table

    only = compare_models(store, ["start", "expert"], ["humaneval"])
    assert [row.label for row in only.rows] == ["humaneval/pass@1"] and only.warnings == []


def test_different_eval_sets_and_missing_runs_are_warned(store: ModelStore, tmp_path: Path) -> None:
    stored_model(store, tmp_path, "soup")
    run(store, "soup", "humaneval", [Metric("pass@1", 0.12, 0.025, 164)], eval_set="humaneval#sha256=bbbb")
    comparison = compare_models(store, ["start", "soup"])
    assert "humaneval: measured on different evaluation sets (start: humaneval#sha256=aaaa; " \
        "soup: humaneval#sha256=bbbb)" in comparison.warnings  # fmt: skip
    assert "xstest: no run for soup" in comparison.warnings
    assert [row.cells[1] for row in comparison.rows if row.suite == "xstest"] == [None, None]
    assert "\n".join(format_table(comparison).splitlines()[2:4]).count(" -") == 2  # unmeasured cells


def test_marks_need_more_than_one_combined_stderr() -> None:
    reference = Metric("m", 0.5, 0.03, 100)
    edge = 0.5 + math.hypot(0.03, 0.04)
    assert mark(reference, Metric("m", edge - 1e-9, 0.04, 100), True) == ""
    assert mark(reference, Metric("m", edge + 1e-9, 0.04, 100), True) == BETTER
    assert mark(reference, Metric("m", edge + 1e-9, 0.04, 100), False) == WORSE
    assert mark(reference, Metric("m", math.nan, 0.04, 100), True) == "" and mark(reference, None, True) == ""


def test_plot_has_one_panel_per_metric_and_is_a_png(store: ModelStore, tmp_path: Path) -> None:
    from PIL import Image

    comparison = compare_models(store, ["start", "expert"])
    figure = plot_comparison(comparison, tmp_path / "plots" / "compare.png")
    assert len(figure.axes) == 3  # three metrics: three panels, the unused grid cells removed
    assert [len(ax.patches) for ax in figure.axes] == [2, 2, 2]  # a bar per model
    assert [ax.get_title().splitlines()[0] for ax in figure.axes] == [row.label for row in comparison.rows]
    with Image.open(tmp_path / "plots" / "compare.png") as image:
        assert image.format == "PNG" and image.size[0] > 600


def test_cli_prints_the_table_writes_the_plot_and_refuses_bad_input(
    store: ModelStore, tmp_path: Path
) -> None:
    from assay.cli.main import app

    plot = tmp_path / "out.png"
    result = CliRunner().invoke(app, ["eval", "compare", "start", "expert", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "metric\tbetter\tstart\texpert" in result.stdout  # piped: tab-separated
    assert "humaneval/pass@1\thigher\t0.100 ± 0.020\t0.200 ± 0.030 +" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    as_json = CliRunner().invoke(app, ["eval", "compare", "start", "expert", "--suite", "xstest", "--json"])
    report = json.loads(as_json.stdout)
    assert [row["metric"] for row in report["rows"]] == ["over_refusal", "unsafe_refusal"]
    assert report["rows"][1]["cells"]["expert"] == {
        "name": "unsafe_refusal", "value": 0.8, "stderr": 0.03, "n": 200, "higher_is_better": True,
        "mark": "-",
    }  # fmt: skip
    assert len(report["warnings"]) == 1

    no_runs = CliRunner().invoke(app, ["eval", "compare", "start", "--suite", "mgsm"])
    assert isinstance(no_runs.exception, EvalError) and "none of start has a run of mgsm" in str(
        no_runs.exception
    )
    # What a user sees: one line on stderr, exit code 2.
    command = [str(Path(sys.executable).parent / "assay"), "eval", "compare", "start", "nobody"]
    unknown = subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=120)
    assert unknown.returncode == 2 and len(unknown.stderr.splitlines()) == 1, unknown.stderr
    assert "no stored model 'nobody'" in unknown.stderr
