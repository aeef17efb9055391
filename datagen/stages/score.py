"""Score (prompt, completion) rows with a reward model in a Ray actor pool (one load per actor).

Best-of-N and multilingual arbitrage rank completions by this reward. A row holds one
completion (text, assistant messages, or a completion struct with `text`) and gets one
`reward`, or, with `per_completion`, a list of completions (a generate stage's output) and gets
one reward per completion. Rows are scored in packed batches; a row that cannot be scored
(a completion longer than `max_length` tokens on its own, a malformed value) fails alone.

A row's rewards are kept in the stage-result cache (datagen/stage_cache.py) as soon as its batch
is scored, keyed by the reward model's identity, `max_length`, the scoring code's source, the
prompt and the completions' texts: a re-run or resumed job does not score it again. A cached
reward is the one computed in the batch the row was first scored in (packing other rows beside
it can move the last bits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field

from datagen.stage_cache import StageCacheUser, StageCacheWorker, result_inputs
from datagen.stages.base import BuildContext, Row, RowResult, Stage, StageSpec
from datagen.stages.registry import register_stage

if TYPE_CHECKING:
    import ray.data

    from model_store import ResolvedModel


def _completion_value(value: Any) -> Any:
    """Text or assistant messages from a completion cell (a struct with `text` counts as text)."""
    if isinstance(value, dict) and "text" in value:
        return value["text"]
    if value is None or value == "" or value == []:
        raise ValueError("empty completion")
    return value


class ScoreStageSpec(StageSpec):
    """Add a reward per completion with a reward model (`assay train rm`), in a Ray actor pool."""

    type: Literal["score"] = "score"
    model: str = Field(description="Reward model: a stored model name or an HF folder.")
    prompt: str = Field("prompt_messages", description="Column holding the prompt (messages or text).")
    completion: str = Field("completion", description="Column holding the completion(s).")
    output: str = Field("reward", description="Column for the reward (a list with per_completion).")
    per_completion: bool = Field(False, description="The column holds a list of completions.")
    batch_size: int = Field(16, ge=1, description="Rows per batch sent to an actor.")
    max_length: int = Field(1024, ge=8, description="Tokens per sample; long prompts are cut from the left.")
    concurrency: int = Field(1, ge=1, description="Actors, each holding the model.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs each actor reserves.")


@register_stage
class ScoreStage(StageCacheUser, Stage[ScoreStageSpec]):
    """Add a reward per completion with a reward model saved by `assay train rm`.

    The model is resolved when the stage is built, so a missing one fails before any work.
    """

    spec_class = ScoreStageSpec
    # How a row becomes token ids, packed rows and a reward (the weights are in the model's identity).
    result_modules = ("reward_model.score", "reward_model.data", "reward_model.packing", "reward_model.model")

    def __init__(self, spec: ScoreStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.model: ResolvedModel = (context or BuildContext()).resolve_model(spec.model, "model")
        self.reads = (spec.prompt, spec.completion)
        self.writes = {spec.output: pa.list_(pa.float64()) if spec.per_completion else pa.float64()}
        self.stage_cache_uri = (context or BuildContext()).stage_cache_uri

    def cache_scope(self) -> dict[str, Any]:
        """The stage kind and code, and what a reward depends on besides the row: the model,
        `max_length`, `per_completion`."""
        spec = self.spec
        return self.base_scope() | {"model": self.model.identity, "max_length": spec.max_length,
                                    "per_completion": spec.per_completion}  # fmt: skip

    def cache_inputs(self, row: Row) -> Any:
        """What a row's reward depends on: the prompt and the completions' texts."""
        return [result_inputs(row[self.spec.prompt]), result_inputs(row[self.spec.completion])]

    @property
    def models(self) -> list[str]:
        return [self.model.identity]

    @property
    def concurrency(self) -> int:
        return self.spec.concurrency

    @property
    def actor_cpus(self) -> float:
        return self.spec.num_cpus

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        self.start_cache_counter(self.name)
        return self.map_actors(ds, _ScoreWorker, self.spec.batch_size)


class _ScoreWorker(StageCacheWorker):
    """A Ray actor holding one reward model; called with batches of rows (through the
    stage-result cache: `StageCacheWorker`)."""

    stage: ScoreStage

    def __init__(self, stage: ScoreStage) -> None:
        from reward_model.score import RewardScorer

        self.stage = stage
        self.spec = stage.spec
        self.scorer = RewardScorer(
            stage.model.path, max_length=self.spec.max_length, batch_size=self.spec.batch_size
        )

    def process_rows(self, rows: list[Row]) -> list[RowResult]:
        """Tokenize row by row (a bad row fails alone), then score every sample in one pass."""
        spec = self.spec
        samples: list[list[int]] = []
        spans: list[tuple[int, int] | Exception] = []
        for row in rows:
            try:
                values = row[spec.completion] if spec.per_completion else [row[spec.completion]]
                if values is None:
                    raise ValueError(f"column {spec.completion!r} is null")
                ids = [self.scorer.tokenize(row[spec.prompt], _completion_value(value)) for value in values]
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
            results.append({spec.output: scores if spec.per_completion else scores[0]})
        return results
