"""Execution-verified code (Command A report, 3.3.4): N programs per problem, run against the
problem's tests in the sandbox, reward = fraction of tests passed (-1.0 without a code block),
SFT rows above a threshold and AceCoder-style preference pairs, an optional reward-model veto.

The source rows are problems: a prompt (the template's variables), a `language` and `tests` in
that language's sandbox format (docs/sandbox.md); the `mbpp_problems` stage makes them from MBPP.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.common import over_defaults, render_and_generate, sampling_field, score_completions
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.code_select import CodeSelectStageSpec, check_languages
from datagen.stages.execute import ExecuteStageSpec
from datagen.stages.generate import TeacherSpec
from sandbox.config import SandboxConfig

DEFAULT_SAMPLING: dict[str, Any] = {"n": 4, "temperature": [0.3, 0.7, 1.0, 1.3], "max_tokens": 384}


class VerifiedCodeParams(StrictModel):
    """Parameters of the verified-code recipe."""

    template: str = Field(description="User-turn template file, relative to the spec file.")
    system: str | None = Field(None, description="Optional system-turn template file.")
    engine: EngineConfig | None = Field(None, description="The engine that writes programs (default: hf).")
    teachers: list[TeacherSpec] | None = Field(None, min_length=1, description="A teacher pool instead.")
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING, "Sampling over the recipe's defaults (n 4, temperatures 0.3-1.3, 384 tokens)."
    )
    languages: list[str] | None = Field(
        None, description="Languages the problems may use (checked when the spec loads; null: any)."
    )
    sandbox: SandboxConfig = Field(
        default_factory=lambda: SandboxConfig(pool_size=2),
        description="The sandbox each execute actor opens.",
    )
    execute_actors: int = Field(1, ge=1, description="Execute actors, each with its own warm sandbox.")
    max_concurrency: int = Field(8, ge=1, description="Executions in flight across all actors.")
    min_sft_reward: float = Field(1.0, ge=0.0, le=1.0, description="Pass fraction an SFT completion needs.")
    max_sft_per_prompt: int = Field(1, ge=0, description="SFT rows per problem at most.")
    chosen_min: float = Field(0.8, ge=0.0, le=1.0, description="Reward a chosen completion needs (AceCoder).")
    min_margin: float = Field(0.4, ge=0.0, description="Chosen minus rejected reward, at least (AceCoder).")
    rejected_above: float | None = Field(
        0.0, description="Rejected reward must exceed this (AceCoder: 0); null lets -1.0 be rejected."
    )
    max_pairs_per_prompt: int = Field(1, ge=0, description="Preference pairs per problem at most.")
    reward_model: str | None = Field(
        None, description="A reward model; pairs where it prefers the rejected completion are dropped."
    )

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str] | None) -> list[str] | None:
        return check_languages(value)

    @model_validator(mode="after")
    def _one_engine(self) -> VerifiedCodeParams:
        if self.engine is not None and self.teachers is not None:
            raise ValueError("give `engine` or `teachers`, not both")
        return self


@register_recipe("verified_code")
def verified_code(params: VerifiedCodeParams) -> list[StageSpec]:
    """render -> generate -> execute -> (score) -> code_select."""
    stages: list[StageSpec] = [
        *render_and_generate(
            params.template,
            params.sampling,
            system=params.system,
            engine=params.engine or (HFEngineConfig() if params.teachers is None else None),
            teachers=params.teachers,
        ),
        ExecuteStageSpec(
            name="execute",
            completions="completions",
            sandbox=params.sandbox,
            actors=params.execute_actors,
            max_concurrency=params.max_concurrency,
        ),
    ]
    if params.reward_model is not None:
        stages.append(score_completions(params.reward_model, name="rm-score", output="rm_scores"))
    stages.append(
        CodeSelectStageSpec(
            name="select",
            rm_scores="rm_scores" if params.reward_model is not None else None,
            languages=params.languages,
            min_sft_reward=params.min_sft_reward,
            max_sft_per_prompt=params.max_sft_per_prompt,
            chosen_min=params.chosen_min,
            min_margin=params.min_margin,
            rejected_above=params.rejected_above,
            max_pairs_per_prompt=params.max_pairs_per_prompt,
        )
    )
    return stages
