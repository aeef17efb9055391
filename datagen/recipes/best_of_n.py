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

from pydantic import Field, model_validator

from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.common import (
    RewardRankParams,
    over_defaults,
    render_and_generate,
    reward_stages,
    sampling_field,
)
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.select import BestOfNStageSpec
from datagen.stages.verify import IFEvalVerifyStageSpec

DEFAULT_SAMPLING: dict[str, Any] = {"n": 4, "temperature": [0.3, 0.7, 1.0, 1.3]}


class BestOfNParams(RewardRankParams):
    """Parameters of the best-of-N recipe."""

    template: str = Field(description="User-turn template file, relative to the spec file.")
    system: str | None = Field(None, description="Optional system-turn template file.")
    engine: EngineConfig = Field(default_factory=HFEngineConfig, description="The engine that samples.")
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING, "Sampling fields over the recipe's defaults (n 4, temperatures 0.3/0.7/1.0/1.3)."
    )
    min_sft_score: float = Field(0.0, description="Best score an SFT row needs.")
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

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)


@register_recipe("best_of_n")
def best_of_n(params: BestOfNParams) -> list[StageSpec]:
    """The stages of best-of-N: render, generate, verify, (score,) select."""
    stages: list[StageSpec] = [
        *render_and_generate(params.template, params.sampling, system=params.system, engine=params.engine),
        IFEvalVerifyStageSpec(name="verify"),
    ]
    if params.reward_model is None:
        return [
            *stages,
            BestOfNStageSpec(name="select", min_sft_score=params.min_sft_score, min_margin=params.min_margin),
        ]
    return stages + reward_stages(
        params,
        verifier="completion_scores",
        rank_by=params.rank_by,
        verifier_pass=params.verifier_pass,
        drop_disagreements=params.drop_disagreements,
        min_verifier=params.min_sft_score if params.rank_by == "verifier" else None,
    )
