"""Score completions with the IFEval-style programmatic verifiers in `judges.ifeval`."""

import pyarrow as pa

from datagen.stages.base import Row, RowStage
from judges.ifeval import verify_response


class IFEvalVerifyStage(RowStage):
    """Score each completion by the fraction of the row's instructions it follows (strict).

    Reads `instruction_id_list` and `kwargs` (IFEval's row format) and a completions column;
    an unsupported instruction or a malformed kwarg fails the row.
    """

    def __init__(self, name: str, completions: str, output: str) -> None:
        super().__init__(name)
        self.completions = completions
        self.output = output
        self.reads = (completions, "instruction_id_list", "kwargs")
        self.writes = {output: pa.list_(pa.float64())}

    def process_row(self, row: Row) -> Row:
        instruction_ids = row["instruction_id_list"] or []
        if not instruction_ids:
            raise ValueError("row has no instructions to verify (instruction_id_list is empty)")
        kwargs_list = row["kwargs"] or [None] * len(instruction_ids)
        scores = []
        for completion in row[self.completions]:
            followed = verify_response(completion["text"], instruction_ids, kwargs_list)
            scores.append(sum(followed) / len(followed))
        return {self.output: scores}
