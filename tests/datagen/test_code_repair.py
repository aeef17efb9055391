"""Repair with execution feedback: the feedback turn, the trajectory across rounds, the selection
(multi-turn SFT only when the last program passes; fixed vs broken pairs), and the recipe's
unrolled stages, whose columns the job checks before anything runs."""

import json
from pathlib import Path

import pytest
import yaml

from datagen.spec import load_spec
from datagen.stages import build_stages, check_columns
from datagen.stages.repair import (
    RepairFeedbackStage,
    RepairFeedbackStageSpec,
    RepairSelectStage,
    RepairSelectStageSpec,
    feedback,
)
from model_store import ModelStore

PROMPT = [{"role": "user", "content": "Write add(a, b)."}]
BROKEN = {"text": "```python\ndef add(a, b):\n    return a - b\n```"}
FIXED = {"text": "```python\ndef add(a, b):\n    return a + b\n```"}
FAILED = {"status": "failed", "passed": 1, "total": 2, "message": "",
          "tests": [{"name": "line 1: add(1, 2) == 3", "passed": False, "message": "AssertionError: -1 != 3"},
                    {"name": "line 2: add(0, 0) == 0", "passed": True, "message": ""}]}  # fmt: skip
PASSED = {"status": "passed", "passed": 2, "total": 2, "message": "", "tests": []}
NO_CODE = {"status": "no_code", "passed": 0, "total": 0, "message": "no python code block", "tests": []}


def first_round(completions: list[dict], verdicts: list[dict]) -> dict:
    stage = RepairFeedbackStage(RepairFeedbackStageSpec(type="repair_feedback", state_out="s1"))
    return stage.process_row(
        {"prompt_messages": PROMPT, "completions": completions, "completion_verdicts": verdicts}
    )


def test_feedback_names_the_failed_tests_within_its_budget() -> None:
    text = feedback(FAILED, 1500)
    assert "1 of 2 tests passed" in text and "add(1, 2) == 3" in text and "-1 != 3" in text
    assert "add(0, 0)" not in text  # passing tests are not feedback
    compile_error = {
        "status": "compile_error",
        "passed": 0,
        "total": 2,
        "message": "SyntaxError: " + "x" * 5000,
    }
    short = feedback(compile_error, 300)
    assert len(short) <= 300 and short.endswith("[cut]") and "compile_error" in short


def test_a_failing_program_is_repaired_over_two_rounds() -> None:
    start = first_round([BROKEN, {"text": "no code"}], [FAILED, NO_CODE])
    assert start["repair_route"] == "repair"
    turns = start["repair_messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"] and "-1 != 3" in turns[2]["content"]
    # Round 2: the first fix still fails, so the model gets the new feedback.
    second = RepairFeedbackStage(
        RepairFeedbackStageSpec(type="repair_feedback", state_in="s1", state_out="s2", completions="fix1")
    ).process_row(
        {
            "prompt_messages": PROMPT,
            "fix1": [BROKEN, NO_CODE],
            "completion_verdicts": [FAILED, NO_CODE],
            "s1": start["s1"],
        }
    )
    assert second["repair_route"] == "repair" and len(second["repair_messages"]) == 5
    select = RepairSelectStage(RepairSelectStageSpec(type="repair_select", state_in="s2", completions="fix2"))
    done = select.process_row(
        {"s2": second["s2"], "fix2": [{"text": "no"}, FIXED], "completion_verdicts": [NO_CODE, PASSED]}
    )
    assert [t["role"] for t in done["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert done["messages"][-1]["content"] == FIXED["text"]
    assert done["chosen"] == [{"role": "assistant", "content": FIXED["text"]}]
    assert done["rejected"] == [{"role": "assistant", "content": BROKEN["text"]}] and done["prompt"] == PROMPT
    assert done["scores"] == {"repair_rounds": 2, "repaired": True, "first_passed": False}
    still_broken = select.process_row({"s2": second["s2"], "fix2": [BROKEN], "completion_verdicts": [FAILED]})
    assert (
        still_broken["messages"] is None and still_broken["chosen"] is None
    )  # kept only when it ends passing


def test_rows_that_need_no_repair_skip_the_model() -> None:
    passed = first_round([FIXED, BROKEN], [PASSED, FAILED])
    assert passed["repair_route"] == "done" and passed["repair_messages"] is None
    assert json.loads(passed["s1"])["first_passed"] is True
    nothing = first_round([{"text": "?"}], [NO_CODE])  # no attempt wrote code: nothing to repair
    assert nothing["repair_route"] == "done"
    with pytest.raises(ValueError, match="cannot be judged"):
        first_round([FIXED], [{"status": "invalid_input", "message": "no tests given"}])


def test_recipe_unrolls_rounds_and_its_columns_check(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "t.j2").write_text("{{ prompt }}\n")
    (tmp_path / "rows.jsonl").write_text(
        json.dumps({"prompt": "p", "language": "python", "tests": "assert 1\n"})
    )
    spec = {
        "name": "repair",
        "source": {"path": "rows.jsonl"},
        "recipe": {"name": "code_repair", "params": {"template": "t.j2", "rounds": 2,
                                                     "engine": {"model": str(tiny_model)}}},
        "outputs": [{"dataset": "r-sft", "kind": "sft"}, {"dataset": "r-pref", "kind": "preference"}],
    }  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    loaded = load_spec(tmp_path / "p.yaml")
    names = [s.name for s in loaded.spec.stages]
    rounds = ["feedback-1", "fix-1", "execute-1", "feedback-2", "fix-2", "execute-2"]
    assert names == ["render", "generate", "execute", *rounds, "select"]
    stages = build_stages(loaded, ModelStore(tmp_path / "models"))
    available = check_columns(stages, ["prompt", "language", "tests", "id"], "p.yaml")
    assert {"messages", "chosen", "rejected", "repair_state_2"} <= set(available)


def test_select_metrics_count_first_passes_repairs_by_round_and_failures(ray_local: None) -> None:
    import ray.data

    from datagen.stages.base import ERROR_COLUMN

    def row(first: bool, repaired: bool, rounds: int, error: str | None = None) -> dict:
        scores = {"repair_rounds": rounds, "repaired": repaired, "first_passed": first}
        return {"scores": scores, ERROR_COLUMN: error}

    rows = [row(True, False, 0), row(False, True, 1), row(False, True, 2), row(False, True, 2),
            row(False, False, 2), row(False, True, 1, error="execute: sandbox error")]  # fmt: skip
    select = RepairSelectStage(RepairSelectStageSpec(type="repair_select"))
    # The failed row is a dead letter: not counted.
    assert select.metrics(ray.data.from_items(rows)) == {
        "rows": 5,
        "first_passed": 1,
        "repaired": 3,
        "repaired_by_rounds": {"1": 1, "2": 2},
        "not_repaired": 1,
    }
