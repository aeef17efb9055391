"""Code problems from MBPP rows: a source step for the code recipes.

MBPP (google-research/mbpp, `mbpp.jsonl`) has `text`, `code`, `task_id`, `test_setup_code`
and `test_list`. This stage keeps only the task ids of its training split (601-974 by default;
1-10 are few-shot prompts, 11-510 the test split, 511-600 validation) and writes the problem
columns the code stages read: `prompt` (the task text and the first test, which names the
function, as in the MBPP paper's prompts), `language` (python), `tests` (the setup code and
every assert; one test per assert in the sandbox's Python format), `solution` (the reference)
and `entry_point` (the function the first test calls).

HumanEval is an evaluation set and is never a source here: a row whose `task_id` is not an
integer (HumanEval's are "HumanEval/N") fails instead of becoming a problem.
"""

from __future__ import annotations

import ast
import builtins
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from datagen.stages.base import ERROR_COLUMN, LIGHT_TASK_CPUS, BuildContext, Row, RowStage, StageSpec
from datagen.stages.registry import register_stage

if TYPE_CHECKING:
    import ray.data

MBPP_TRAIN = (601, 974)


def first_call(test: str) -> str | None:
    """The name of the first function a test calls (`assert f(1) == 2` -> `f`)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and not hasattr(builtins, node.func.id)
        ):
            return node.func.id
    return None


class MbppProblemsStageSpec(StageSpec):
    """MBPP rows (train task ids only) as code problems: prompt, language, tests, solution."""

    type: Literal["mbpp_problems"] = "mbpp_problems"
    first_task: int = Field(MBPP_TRAIN[0], ge=1, description="Lowest task id kept (MBPP's train split: 601).")
    last_task: int = Field(MBPP_TRAIN[1], ge=1, description="Highest task id kept (MBPP's train split: 974).")
    shown_tests: int = Field(1, ge=0, description="Tests quoted in the prompt (they name the function).")
    limit: int | None = Field(None, ge=1, description="Keep only the first N problems of the range.")

    @model_validator(mode="after")
    def _range(self) -> MbppProblemsStageSpec:
        if self.first_task > self.last_task:
            raise ValueError(f"first_task {self.first_task} is above last_task {self.last_task}")
        return self


@register_stage
class MbppProblemsStage(RowStage[MbppProblemsStageSpec]):
    """Filter MBPP rows to a task-id range and write the problem columns."""

    spec_class = MbppProblemsStageSpec

    def __init__(self, spec: MbppProblemsStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = ("text", "code", "task_id", "test_list", "test_setup_code")
        self.writes = {
            "prompt": pa.string(),
            "language": pa.string(),
            "tests": pa.string(),
            "solution": pa.string(),
            "entry_point": pa.string(),
        }

    def process_row(self, row: Row) -> Row:
        task_id = row["task_id"]
        if not isinstance(task_id, int):
            raise ValueError(f"task_id {task_id!r} is not an MBPP task id (HumanEval is evaluation-only)")
        tests = [t for t in row["test_list"] or [] if t and t.strip()]
        if not tests and not (row["code"] or "").strip():
            raise ValueError(f"MBPP task {task_id} has no tests and no reference solution")
        setup = (row["test_setup_code"] or "").strip()
        shown = tests[: self.spec.shown_tests]
        prompt = row["text"].strip()
        if shown:
            label = "this test" if len(shown) == 1 else "these tests"
            prompt += f"\nYour code should pass {label}:\n" + "\n".join(shown)
        return {
            "prompt": prompt,
            "language": "python",
            "tests": "\n".join([setup, *tests] if setup else tests) + "\n" if tests else None,
            "solution": (row["code"] or "").replace("\r\n", "\n") or None,
            "entry_point": first_call(tests[0]) if tests else None,
        }

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        first, last = self.spec.first_task, self.spec.last_task

        def in_range(table: pa.Table) -> pa.Table:
            ids = table["task_id"]
            if not pa.types.is_integer(ids.type):  # not MBPP: let process_row fail the rows, loudly
                return table
            keep = pc.or_kleene(
                pc.and_(pc.greater_equal(ids, first), pc.less_equal(ids, last)),
                pc.is_valid(table[ERROR_COLUMN]),
            )
            return table.filter(keep)

        ds = ds.map_batches(in_range, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)
        if self.spec.limit is not None:
            ds = ds.limit(self.spec.limit)
        return super().apply(ds)
