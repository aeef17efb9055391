"""MBPP as code problems: only the train split's task ids become problems, the problem columns
are right, HumanEval-style rows fail, and a problem without tests or reference is refused."""

import json
from pathlib import Path

import pyarrow as pa
import pytest

from datagen.sources import prepare_rows
from datagen.stages.base import ERROR_COLUMN
from datagen.stages.code_problems import MbppProblemsStage, MbppProblemsStageSpec, first_call


def mbpp_row(task_id: object, **overrides: object) -> dict:
    return {
        "text": "Write a function to add two numbers.",
        "code": "def add(a, b):\r\n    return a + b",
        "task_id": task_id,
        "test_setup_code": "",
        "test_list": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"],
    } | overrides


def test_problem_columns() -> None:
    stage = MbppProblemsStage(MbppProblemsStageSpec(type="mbpp_problems"))
    row = stage.process_row(mbpp_row(700, test_setup_code="import math"))
    assert row["prompt"].endswith("Your code should pass this test:\nassert add(1, 2) == 3")
    assert row["tests"] == "import math\nassert add(1, 2) == 3\nassert add(2, 2) == 4\n"
    assert row["solution"] == "def add(a, b):\n    return a + b" and row["language"] == "python"
    assert row["entry_point"] == "add" and first_call("assert len(f(x)) == 2") == "f"
    with pytest.raises(ValueError, match="HumanEval is evaluation-only"):
        stage.process_row(mbpp_row("HumanEval/0"))
    with pytest.raises(ValueError, match="no tests and no reference"):
        stage.process_row(mbpp_row(700, code="", test_list=[]))
    with pytest.raises(ValueError, match="above last_task"):
        MbppProblemsStageSpec(type="mbpp_problems", first_task=900, last_task=601)


def test_only_train_task_ids_pass(ray_local: None) -> None:
    import ray.data

    rows = [mbpp_row(task_id) for task_id in (5, 11, 510, 600, 601, 700, 974, 975)]
    stage = MbppProblemsStage(MbppProblemsStageSpec(type="mbpp_problems", name="problems"))
    out = stage.apply(ray.data.from_arrow(prepare_rows(pa.Table.from_pylist(rows)))).take_all()
    assert sorted(r["task_id"] for r in out) == [601, 700, 974]
    assert all(r[ERROR_COLUMN] is None and r["tests"] for r in out)
    limited = MbppProblemsStage(MbppProblemsStageSpec(type="mbpp_problems", name="p", limit=2))
    assert len(limited.apply(ray.data.from_arrow(prepare_rows(pa.Table.from_pylist(rows)))).take_all()) == 2


def test_real_mbpp_train_split_has_374_problems(shared_data: Path) -> None:
    tasks = [json.loads(line) for line in (shared_data / "mbpp" / "mbpp.jsonl").read_text().splitlines()]
    stage = MbppProblemsStage(MbppProblemsStageSpec(type="mbpp_problems"))
    train = [stage.process_row(t) for t in tasks if 601 <= t["task_id"] <= 974]
    assert len(train) == 374 and all(p["tests"] and p["solution"] and p["entry_point"] for p in train)
