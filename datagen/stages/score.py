"""Score (prompt, completion) rows with a reward model in a Ray actor pool (one load per actor).

Best-of-N and multilingual arbitrage rank completions by this reward. A row holds one
completion (text, assistant messages, or a completion struct with `text`) and gets one
`reward`, or, with `per_completion`, a list of completions (a generate stage's output) and gets
one reward per completion. Rows are scored in packed batches; a row that cannot be scored
(a completion longer than `max_length` tokens on its own, a malformed value) fails alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from datagen.stages.base import Row, RowResult, Stage, process_table
from model_store import ResolvedModel

if TYPE_CHECKING:
    import ray.data


def _completion_value(value: Any) -> Any:
    """Text or assistant messages from a completion cell (a struct with `text` counts as text)."""
    if isinstance(value, dict) and "text" in value:
        return value["text"]
    if value is None or value == "" or value == []:
        raise ValueError("empty completion")
    return value


class ScoreStage(Stage):
    """Add a reward per completion with a reward model saved by `assay train rm`."""

    def __init__(
        self,
        name: str,
        model: ResolvedModel,
        prompt: str = "prompt_messages",
        completion: str = "completion",
        output: str = "reward",
        per_completion: bool = False,
        batch_size: int = 16,
        max_length: int = 1024,
        concurrency: int = 1,
        num_cpus: float = 1.0,
    ) -> None:
        super().__init__(name)
        self.model, self.prompt, self.completion, self.output = model, prompt, completion, output
        self.per_completion, self.batch_size, self.max_length = per_completion, batch_size, max_length
        self.concurrency, self.actor_cpus = concurrency, num_cpus
        self.reads = (prompt, completion)
        self.writes = {output: pa.list_(pa.float64()) if per_completion else pa.float64()}

    @property
    def models(self) -> list[str]:
        return [self.model.identity]

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        import ray.data

        return ds.map_batches(
            _ScoreWorker,
            fn_constructor_args=(self,),
            batch_size=self.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.concurrency),
            num_cpus=self.actor_cpus,
            udf_modifying_row_count=False,
        )


class _ScoreWorker:
    """A Ray actor holding one reward model; called with batches of rows."""

    def __init__(self, stage: ScoreStage) -> None:
        from reward_model.score import RewardScorer

        self.stage = stage
        self.scorer = RewardScorer(stage.model.path, max_length=stage.max_length, batch_size=stage.batch_size)

    def __call__(self, table: pa.Table) -> pa.Table:
        stage = self.stage
        return process_table(table, stage.name, stage.reads, stage.writes, self._score)

    def _score(self, rows: list[Row]) -> list[RowResult]:
        """Tokenize row by row (a bad row fails alone), then score every sample in one pass."""
        stage = self.stage
        samples: list[list[int]] = []
        spans: list[tuple[int, int] | Exception] = []
        for row in rows:
            try:
                values = row[stage.completion] if stage.per_completion else [row[stage.completion]]
                if values is None:
                    raise ValueError(f"column {stage.completion!r} is null")
                ids = [self.scorer.tokenize(row[stage.prompt], _completion_value(value)) for value in values]
            except Exception as err:  # noqa: BLE001 - a bad row becomes a dead letter
                spans.append(err)
                continue
            spans.append((len(samples), len(samples) + len(ids)))
            samples += ids
        rewards = self.scorer.score_ids(samples) if samples else []
        results: list[RowResult] = []
        for span in spans:
            if isinstance(span, Exception):
                results.append(span)
                continue
            scores = rewards[span[0] : span[1]]
            results.append({stage.output: scores if stage.per_completion else scores[0]})
        return results
