"""Best-of-N selection: the best completion becomes SFT data, best vs worst a preference pair."""

from typing import Literal

import pyarrow as pa
from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowStage, StageSpec
from datagen.stages.registry import register_stage
from datasets_registry.kinds import MESSAGES_TYPE


class BestOfNStageSpec(StageSpec):
    """Pick the best completion (SFT) and best-vs-worst (preference) by score."""

    type: Literal["best_of_n"] = "best_of_n"
    prompt: str = Field("prompt_messages", description="Column holding the prompt conversation.")
    completions: str = Field("completions", description="Column of completions.")
    scores: str = Field("completion_scores", description="Column of scores, one per completion.")
    score_name: str = Field("ifeval", description="Name of the score in the `scores` column.")
    min_sft_score: float = Field(0.0, description="Best score an SFT row needs.")
    min_margin: float = Field(
        0.0, ge=0.0, description="A preference pair needs best - worst > this; ties are skipped."
    )


@register_stage
class BestOfNStage(RowStage[BestOfNStageSpec]):
    """Select by score among a row's completions.

    Writes `prompt` (the conversation), `messages` (prompt + best completion, or null when the
    best score is below `min_sft_score`), `chosen`/`rejected` (best/worst as assistant turns, or
    null when best - worst <= `min_margin`: ties are skipped), and `scores`.
    """

    spec_class = BestOfNStageSpec

    def __init__(self, spec: BestOfNStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        score_name = spec.score_name
        self.reads = (spec.prompt, spec.completions, spec.scores)
        self.writes = {
            "prompt": MESSAGES_TYPE,
            "messages": MESSAGES_TYPE,
            "chosen": MESSAGES_TYPE,
            "rejected": MESSAGES_TYPE,
            "scores": pa.struct(
                [
                    (f"{score_name}_best", pa.float64()),
                    (f"{score_name}_worst", pa.float64()),
                    (f"{score_name}_mean", pa.float64()),
                    ("best_temperature", pa.float64()),
                    ("n", pa.int64()),
                ]
            ),
        }

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        completions, scores = row[spec.completions], row[spec.scores]
        if not completions or len(completions) != len(scores):
            raise ValueError(f"{len(completions or [])} completions but {len(scores or [])} scores")
        # max/min keep the first of equal scores, so the choice is deterministic.
        best = max(range(len(scores)), key=lambda i: scores[i])
        worst = min(range(len(scores)), key=lambda i: scores[i])
        prompt = row[spec.prompt]

        def turn(index: int) -> list[dict[str, str]]:
            return [{"role": "assistant", "content": completions[index]["text"]}]

        is_pair = scores[best] - scores[worst] > spec.min_margin
        return {
            "prompt": prompt,
            "messages": prompt + turn(best) if scores[best] >= spec.min_sft_score else None,
            "chosen": turn(best) if is_pair else None,
            "rejected": turn(worst) if is_pair else None,
            "scores": {
                f"{spec.score_name}_best": scores[best],
                f"{spec.score_name}_worst": scores[worst],
                f"{spec.score_name}_mean": sum(scores) / len(scores),
                "best_temperature": completions[best]["temperature"],
                "n": len(scores),
            },
        }
