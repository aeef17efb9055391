"""The decontaminate stage: a batch flagged with the evaluation items its rows overlap, and a real
job on Ray that drops them with `drop: true` and records the counts per evaluation set in lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from assay.errors import AssayError
from datagen.job import prepare_job, run_job
from datagen.spec import load_spec
from datagen.stages import ERROR_COLUMNS, BuildContext
from datagen.stages.decontaminate import (
    DecontaminateStage,
    DecontaminateStageSpec,
    _Counts,
    _DecontaminateWorker,
)
from datasets_registry import Registry
from eval_sets import load_humaneval, load_ifeval, load_mgsm
from model_store import ModelStore


def write_rows(folder: Path) -> Path:
    problem = load_humaneval()[5]
    question = load_mgsm(["ja"])[11]
    heldout = load_ifeval(["en"])[1]
    rows = [
        {"id": "clean", "prompt": "Write a haiku about tulips in spring.",
         "messages": [{"role": "user", "content": "Write a haiku about tulips."},
                      {"role": "assistant", "content": "Red cups in the rain"}]},
        {"id": "humaneval", "prompt": "Finish the code.",
         "messages": [{"role": "user", "content": problem.prompt},
                      {"role": "assistant", "content": problem.canonical_solution}]},
        {"id": "mgsm-ja", "prompt": f"次の問題に答えてください。{question.question}", "messages": []},
        {"id": "ifeval", "prompt": heldout.prompt, "messages": []},
    ]  # fmt: skip
    path = folder / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
    return path


def run(folder: Path, registry: Registry, **stage: object) -> tuple[list[dict], dict]:
    spec = folder / "decontam.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "decontam",
                "source": {"path": str(write_rows(folder))},
                "stages": [{"type": "decontaminate", "name": "decontam", **stage}],
                "outputs": [{"dataset": "clean", "kind": "generic"}],
            }
        )
    )
    job = prepare_job(load_spec(spec), registry, ModelStore(folder / "models"))
    report = run_job(job, registry, log=lambda _: None)
    assert report.rows_failed == 0
    rows = registry.open("clean@latest").to_arrow().to_pylist()
    return sorted(rows, key=lambda r: r["id"]), registry.open("clean@latest").info.lineage.metrics


@pytest.mark.usefixtures("ray_local", "shared_data")
def test_a_batch_gets_flags_with_the_items_it_overlaps_and_failed_rows_pass_through(tmp_path: Path) -> None:
    import ray

    rows = [json.loads(line) for line in write_rows(tmp_path).read_text().splitlines()]
    table = pa.Table.from_pylist(rows)
    for name, arrow_type in ERROR_COLUMNS.items():
        table = table.append_column(name, pa.array([None, None, None, "boom"], type=arrow_type))
    counter = ray.remote(num_cpus=0)(_Counts).remote()
    out = _DecontaminateWorker(DecontaminateStageSpec(), counter)(table).to_pylist()
    assert [r["contaminated"] for r in out] == [False, True, True, None]  # the failed row is unchecked
    assert [(c["set"], c["item"]) for c in out[1]["contamination"]] == [("humaneval", load_humaneval()[5].id)]
    assert [(c["set"], c["item"]) for c in out[2]["contamination"]] == [("mgsm", load_mgsm(["ja"])[11].id)]
    assert out[2]["contamination"][0]["overlap"] == 1.0 and out[0]["contamination"] == []
    assert ray.get(counter.get.remote()) == {
        "rows_checked": 3,
        "rows_flagged": 2,
        "by_set": {"humaneval": 1, "mgsm": 1},
    }


@pytest.mark.usefixtures("ray_local", "shared_data")
def test_a_job_drops_flagged_rows_and_records_counts_per_set_in_lineage(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    rows, metrics = run(tmp_path, registry, drop=True, min_overlap=0.6)
    assert [(r["id"], r["contaminated"]) for r in rows] == [("clean", False)]
    stage = metrics["stages"]["decontam"]
    assert (stage["rows_checked"], stage["rows_flagged"], stage["rows_dropped"]) == (4, 3, 3)
    assert stage["by_set"] == {"ifeval": 1, "humaneval": 1, "mgsm": 1, "xstest": 0, "leval": 0}
    assert stage["min_overlap"] == 0.6
    assert stage["eval_sets"]["mgsm"].startswith("mgsm#sha256=")
    assert stage["eval_sets"]["humaneval:dev"].startswith("humaneval:dev#sha256=")  # indexed too


@pytest.mark.usefixtures("shared_data")
def test_named_columns_are_read_and_the_overlap_threshold_is_bounded() -> None:
    stage = DecontaminateStage(DecontaminateStageSpec(columns=["prompt"]), BuildContext())
    assert stage.reads == ("prompt",)
    assert set(stage.writes) == {"contaminated", "contamination"}
    with pytest.raises(ValueError, match="min_overlap"):
        DecontaminateStageSpec(min_overlap=1.5)


def test_missing_evaluation_files_fail_the_spec_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSAY_EVAL_DATA", str(tmp_path))
    with pytest.raises(AssayError, match=r"stages\.0\.type: evaluation file .* not found"):
        DecontaminateStage(DecontaminateStageSpec(), BuildContext())
