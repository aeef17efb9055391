"""Best-of-N selection: the best completion becomes SFT data, best vs worst a preference pair."""

import pyarrow as pa

from datagen.stages.base import Row, RowStage
from datasets_registry.kinds import MESSAGES_TYPE


class BestOfNStage(RowStage):
    """Select by score among a row's completions.

    Writes `prompt` (the conversation), `messages` (prompt + best completion, or null when the
    best score is below `min_sft_score`), `chosen`/`rejected` (best/worst as assistant turns, or
    null when best - worst <= `min_margin`: ties are skipped), and `scores`.
    """

    def __init__(
        self,
        name: str,
        prompt: str,
        completions: str,
        scores: str,
        score_name: str,
        min_sft_score: float,
        min_margin: float,
    ) -> None:
        super().__init__(name)
        self.prompt, self.completions, self.scores = prompt, completions, scores
        self.score_name = score_name
        self.min_sft_score, self.min_margin = min_sft_score, min_margin
        self.reads = (prompt, completions, scores)
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
        completions, scores = row[self.completions], row[self.scores]
        if not completions or len(completions) != len(scores):
            raise ValueError(f"{len(completions or [])} completions but {len(scores or [])} scores")
        # max/min keep the first of equal scores, so the choice is deterministic.
        best = max(range(len(scores)), key=lambda i: scores[i])
        worst = min(range(len(scores)), key=lambda i: scores[i])
        prompt = row[self.prompt]

        def turn(index: int) -> list[dict[str, str]]:
            return [{"role": "assistant", "content": completions[index]["text"]}]

        is_pair = scores[best] - scores[worst] > self.min_margin
        return {
            "prompt": prompt,
            "messages": prompt + turn(best) if scores[best] >= self.min_sft_score else None,
            "chosen": turn(best) if is_pair else None,
            "rejected": turn(worst) if is_pair else None,
            "scores": {
                f"{self.score_name}_best": scores[best],
                f"{self.score_name}_worst": scores[worst],
                f"{self.score_name}_mean": sum(scores) / len(scores),
                "best_temperature": completions[best]["temperature"],
                "n": len(scores),
            },
        }
