"""Best-of-N with programmatic verifiers (Command A report, 3.3.1 and 3.3.3).

For each prompt, sample N completions at varied temperatures, score each with the IFEval-style
verifiers, keep the best as SFT data and the best against the worst as a preference pair.
"""

from typing import Any

from pydantic import Field, field_validator

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.generate import GenerateStageSpec
from datagen.stages.render import RenderStageSpec
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

    @field_validator("sampling", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        return {**DEFAULT_SAMPLING, **value} if isinstance(value, dict) else value


@register_recipe("best_of_n")
def best_of_n(params: BestOfNParams) -> list[StageSpec]:
    """The stages of best-of-N: render, generate, verify, select."""
    return [
        RenderStageSpec(name="render", template=params.template, system=params.system),
        GenerateStageSpec(name="generate", engine=params.engine, sampling=params.sampling),
        IFEvalVerifyStageSpec(name="verify"),
        BestOfNStageSpec(name="select", min_sft_score=params.min_sft_score, min_margin=params.min_margin),
    ]
