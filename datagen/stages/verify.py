"""Score completions with the IFEval-style programmatic verifiers in `judges.ifeval`."""

from typing import Literal

import pyarrow as pa
from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowStage, StageSpec
from datagen.stages.registry import register_stage
from judges.ifeval import verify_response


class IFEvalVerifyStageSpec(StageSpec):
    """Score each completion by the fraction of the row's verifiable instructions it follows."""

    type: Literal["ifeval_verify"] = "ifeval_verify"
    completions: str = Field("completions", description="Column of completions to check.")
    output: str = Field("completion_scores", description="Column for one score per completion.")


@register_stage
class IFEvalVerifyStage(RowStage[IFEvalVerifyStageSpec]):
    """Score each completion by the fraction of the row's instructions it follows (strict).

    Reads `instruction_id_list` and `kwargs` (IFEval's row format) and a completions column;
    an unsupported instruction or a malformed kwarg fails the row.
    """

    spec_class = IFEvalVerifyStageSpec

    def __init__(self, spec: IFEvalVerifyStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = (spec.completions, "instruction_id_list", "kwargs")
        self.writes = {spec.output: pa.list_(pa.float64())}

    def process_row(self, row: Row) -> Row:
        instruction_ids = row["instruction_id_list"] or []
        if not instruction_ids:
            raise ValueError("row has no instructions to verify (instruction_id_list is empty)")
        kwargs_list = row["kwargs"] or [None] * len(instruction_ids)
        scores = []
        for completion in row[self.spec.completions]:
            followed = verify_response(completion["text"], instruction_ids, kwargs_list)
            scores.append(sum(followed) / len(followed))
        return {self.spec.output: scores}
