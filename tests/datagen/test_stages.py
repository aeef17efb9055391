"""Stages without Ray: error isolation per row, best-of-N selection, column checks."""

import pyarrow as pa
import pytest

from assay.errors import AssayError
from datagen.sources import prepare_rows
from datagen.stages import check_columns
from datagen.stages.base import ERROR_COLUMN, ERROR_STAGE_COLUMN, process_table, run_rows_isolated
from datagen.stages.select import BestOfNStage, BestOfNStageSpec


def double(row: dict) -> dict:
    if row["x"] == 3:
        raise ValueError("three is bad")
    return {"y": row["x"] * 2}


def test_a_failing_row_is_marked_and_the_others_are_processed() -> None:
    table = prepare_rows(pa.table({"x": [1, 2, 3, 4]}))
    out = process_table(
        table, "double", ("x",), {"y": pa.int64()}, lambda rows: run_rows_isolated(rows, double)
    )
    assert out["y"].to_pylist() == [2, 4, None, 8]
    assert out[ERROR_COLUMN].to_pylist() == [None, None, "ValueError: three is bad", None]
    assert out[ERROR_STAGE_COLUMN].to_pylist() == [None, None, "double", None]
    # A later stage skips the failed row and keeps its error.
    seen: list[int] = []

    def record(rows: list[dict]) -> list[dict]:
        seen.extend(row["y"] for row in rows)
        return [{"z": row["y"] + 1} for row in rows]

    later = process_table(out, "inc", ("y",), {"z": pa.int64()}, record)
    assert seen == [2, 4, 8]
    assert later["z"].to_pylist() == [3, 5, None, 9]
    assert later[ERROR_STAGE_COLUMN].to_pylist() == [None, None, "double", None]


def test_prepare_rows_adds_stable_content_ids() -> None:
    first = prepare_rows(pa.table({"x": [1, 2]}))
    again = prepare_rows(pa.table({"x": [1, 2]}))
    assert first["id"].to_pylist() == again["id"].to_pylist()
    assert len(set(first["id"].to_pylist())) == 2
    assert prepare_rows(pa.table({"id": ["keep"], "x": [1]}))["id"].to_pylist() == ["keep"]


def completion(text: str, temperature: float = 0.7) -> dict:
    return {"text": text, "temperature": temperature}


PROMPT = [{"role": "user", "content": "q"}]


def select(scores: list[float], min_sft_score: float = 0.0, min_margin: float = 0.0) -> dict:
    stage = BestOfNStage(BestOfNStageSpec(name="select", min_sft_score=min_sft_score, min_margin=min_margin))
    completions = [completion(f"c{i}", 0.1 * i) for i in range(len(scores))]
    return stage.process_row(
        {"prompt_messages": PROMPT, "completions": completions, "completion_scores": scores}
    )


def test_best_of_n_picks_best_for_sft_and_best_vs_worst_for_preference() -> None:
    row = select([0.5, 1.0, 0.0, 0.5])
    assert row["messages"] == PROMPT + [{"role": "assistant", "content": "c1"}]
    assert row["chosen"] == [{"role": "assistant", "content": "c1"}]
    assert row["rejected"] == [{"role": "assistant", "content": "c2"}]
    assert row["prompt"] == PROMPT
    assert row["scores"] == {"ifeval_best": 1.0, "ifeval_worst": 0.0, "ifeval_mean": 0.5,
                             "best_temperature": 0.1, "n": 4}  # fmt: skip


def test_best_of_n_skips_ties_and_low_scores() -> None:
    tie = select([0.5, 0.5, 0.5])
    assert tie["chosen"] is None and tie["rejected"] is None
    assert tie["messages"][-1]["content"] == "c0"  # first of equal scores
    assert select([0.2, 0.4], min_sft_score=0.5)["messages"] is None
    assert select([0.2, 0.4], min_margin=0.25)["chosen"] is None
    assert select([0.2, 0.5], min_margin=0.25)["chosen"] is not None


def test_best_of_n_rejects_mismatched_scores() -> None:
    with pytest.raises(ValueError, match="2 completions but 1 scores"):
        BestOfNStage(BestOfNStageSpec(prompt="p", completions="c", scores="s2")).process_row(
            {"p": PROMPT, "c": [completion("a"), completion("b")], "s2": [1.0]}
        )


def test_check_columns_names_stage_and_missing_column() -> None:
    stage = BestOfNStage(BestOfNStageSpec(name="select", score_name="x"))
    with pytest.raises(AssayError, match=r"stage 'select' reads 'prompt_messages', 'completions'"):
        check_columns([stage], ["id", "completion_scores"], "spec.yaml")
    available = check_columns([stage], ["prompt_messages", "completions", "completion_scores"], "s")
    assert {"messages", "chosen", "rejected", "scores"} <= set(available)


def test_rows_an_output_kind_refuses_become_dead_letters() -> None:
    from datagen.outputs import check_output_rows, dead_letter_rows
    from datasets_registry.kinds import MESSAGES_TYPE

    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    table = prepare_rows(
        pa.table({"id": ["ok", "bad"], "messages": pa.array([good, good[:1]], MESSAGES_TYPE)})
    )
    checked = check_output_rows(table, "sft", "my-sft")
    assert checked[ERROR_STAGE_COLUMN].to_pylist() == [None, "output:my-sft"]
    (dead,) = dead_letter_rows(checked, "job-1").to_pylist()
    assert dead["id"] == "bad" and "does not end with an assistant turn" in dead["error"]


def test_a_value_that_does_not_fit_the_declared_type_fails_only_its_row() -> None:
    table = prepare_rows(pa.table({"x": [1, 2]}))
    out = process_table(table, "s", ("x",), {"y": pa.int64()}, lambda rows: [{"y": 1}, {"y": "not a number"}])
    assert out["y"].to_pylist() == [1, None]
    assert out[ERROR_STAGE_COLUMN].to_pylist() == [None, "s"]
    assert "does not fit" in out[ERROR_COLUMN][1].as_py()


def test_failed_rows_keep_existing_values_of_a_rewritten_column() -> None:
    table = prepare_rows(pa.table({"x": [1, 2]}))
    out = process_table(table, "s", ("x",), {"x": pa.int64()}, lambda rows: [{"x": 10}, ValueError("no")])
    assert out["x"].to_pylist() == [10, 2]
