"""Best-of-N with programmatic verifiers and/or a reward model (Command A report, 3.3.1, 3.3.3, 3.5).

For each prompt, sample N completions at varied temperatures, score each with the IFEval-style
verifiers, keep the best as SFT data and the best against the worst as a preference pair.

With `reward_model`, a reward model scores every completion too, and `rank_by` picks the
ranking: `verifier` (the default), `reward`, or `both` (the reward model ranks among the
completions that pass the verifiers). `drop_disagreements` skips pairs where the reward model
and the verifier prefer different sides; `min_mean_reward` drops prompts whose completions score
low on average. Without a reward model the stages are exactly the verifier-only ones.
"""

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.generate import GenerateStageSpec
from datagen.stages.rank_select import RankSelectStageSpec
from datagen.stages.render import RenderStageSpec
from datagen.stages.score import ScoreStageSpec
from datagen.stages.select import BestOfNStageSpec
from datagen.stages.verify import IFEvalVerifyStageSpec

DEFAULT_SAMPLING: dict[str, Any] = {"n": 4, "temperature": [0.3, 0.7, 1.0, 1.3]}


class BestOfNParams(StrictModel):
    """Parameters of the best-of-N recipe."""

    template: str = Field(description="User-turn template file, relative to the spec file.")
    system: str | None = Field(None, description="Optional system-turn template file.")
    engine: EngineConfig = Field(default_factory=HFEngineConfig, description="The engine that samples.")
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig.model_validate(DEFAULT_SAMPLING),
        description="Sampling fields over the recipe's defaults (n 4, temperatures 0.3/0.7/1.0/1.3).",
    )
    min_sft_score: float = Field(0.0, description="Best score an SFT row needs.")
    min_margin: float = Field(0.0, ge=0.0, description="Preference pairs need best - worst > this.")
    reward_model: str | None = Field(
        None,
        description="A reward model (`assay train rm`) that scores every completion; none: verifiers only.",
    )
    rank_by: Literal["verifier", "reward", "both"] = Field(
        "verifier",
        description="Rank by verifier score, by reward, or by reward among verifier-passing completions.",
    )
    verifier_pass: float = Field(1.0, description="A verifier score at least this passes (rank_by: both).")
    drop_disagreements: bool = Field(
        False, description="Skip pairs where the reward model and the verifier prefer different sides."
    )
    min_reward: float | None = Field(
        None, description="Prompts whose best reward is below this give no data."
    )
    min_mean_reward: float | None = Field(
        None, description="Prompts whose mean reward is below this give no data (report 3.5)."
    )
    score_max_length: int = Field(1024, ge=8, description="Tokens per sample the reward model scores.")
    score_num_cpus: float = Field(
        0.5,
        gt=0,
        description="CPUs the reward-model actor reserves; with the engine's it must leave Ray a "
        "fraction of a CPU for the light stages, or the job waits forever.",
    )

    @model_validator(mode="after")
    def _reward_options_need_a_model(self) -> "BestOfNParams":
        wants_rm = (
            self.rank_by != "verifier"
            or self.drop_disagreements
            or self.min_reward is not None
            or self.min_mean_reward is not None
        )
        if wants_rm and self.reward_model is None:
            raise ValueError(
                "rank_by reward/both, drop_disagreements and min_(mean_)reward need `reward_model`"
            )
        return self

    @field_validator("sampling", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        return {**DEFAULT_SAMPLING, **value} if isinstance(value, dict) else value


@register_recipe("best_of_n")
def best_of_n(params: BestOfNParams) -> list[StageSpec]:
    """The stages of best-of-N: render, generate, verify, (score,) select."""
    stages: list[StageSpec] = [
        RenderStageSpec(name="render", template=params.template, system=params.system),
        GenerateStageSpec(name="generate", engine=params.engine, sampling=params.sampling),
        IFEvalVerifyStageSpec(name="verify"),
    ]
    if params.reward_model is None:
        return [
            *stages,
            BestOfNStageSpec(name="select", min_sft_score=params.min_sft_score, min_margin=params.min_margin),
        ]
    return [
        *stages,
        ScoreStageSpec(
            name="reward",
            model=params.reward_model,
            completion="completions",
            output="rewards",
            per_completion=True,
            max_length=params.score_max_length,
            num_cpus=params.score_num_cpus,
        ),
        RankSelectStageSpec(
            name="select",
            rewards="rewards",
            verifier="completion_scores",
            rank_by=params.rank_by,
            verifier_pass=params.verifier_pass,
            drop_disagreements=params.drop_disagreements,
            min_reward=params.min_reward,
            min_mean_reward=params.min_mean_reward,
            min_verifier=params.min_sft_score if params.rank_by == "verifier" else None,
            min_margin=params.min_margin,
        ),
    ]
