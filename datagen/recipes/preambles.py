"""Best-of-N under system-prompt preambles (Command A report, 3.3.1.3).

Each prompt gets a preamble drawn from a library (reply language, JSON only, no Markdown,
banned words, length limits ...), attached as its system turn; the teacher samples N
completions; each is scored by the share of checks it passes: the preamble's verifier (an
IFEval check, the language check of judges.language_id, or the no-Markdown check) and, with
`user_instructions`, the row's own IFEval instructions; best-of-N keeps the best as SFT data (by
default only when it passes every check) and best against worst as a preference pair.
"""

from typing import Any

from pydantic import Field

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.common import over_defaults, sampling_field
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.generate import GenerateStageSpec
from datagen.stages.preambles import PreambleAttachStageSpec, PreambleVerifyStageSpec
from datagen.stages.render import RenderStageSpec
from datagen.stages.select import BestOfNStageSpec

DEFAULT_SAMPLING: dict[str, Any] = {"n": 4, "temperature": [0.3, 0.7, 1.0, 1.3]}


class PreamblesParams(StrictModel):
    """Parameters of the preambles recipe."""

    template: str = Field(description="User-turn template file, relative to the spec file.")
    preambles: str = Field(
        description="Preamble library (JSONL: id, type, text, check), relative to the spec file."
    )
    types: list[str] | None = Field(None, description="Draw only preambles of these types (default: all).")
    rate: float = Field(1.0, ge=0.0, le=1.0, description="Share of prompts that get a preamble.")
    seed: int = Field(0, description="Seed of the preamble draws.")
    user_instructions: bool = Field(
        False, description="Also verify the rows' own IFEval instructions (`instruction_id_list`, `kwargs`)."
    )
    engine: EngineConfig = Field(default_factory=HFEngineConfig, description="The engine that samples.")
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING, "Sampling fields over the recipe's defaults (n 4, temperatures 0.3/0.7/1.0/1.3)."
    )
    min_sft_score: float = Field(1.0, description="Best score an SFT row needs (1.0: every check passes).")
    min_margin: float = Field(0.0, ge=0.0, description="Preference pairs need best - worst > this.")

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)


@register_recipe("preambles")
def preambles(params: PreamblesParams) -> list[StageSpec]:
    """The stages: render, attach a preamble, generate, verify, select."""
    return [
        RenderStageSpec(name="render", template=params.template, output="user_messages"),
        PreambleAttachStageSpec(
            name="preamble",
            preambles=params.preambles,
            types=params.types,
            rate=params.rate,
            seed=params.seed,
        ),
        GenerateStageSpec(name="generate", engine=params.engine, sampling=params.sampling),
        PreambleVerifyStageSpec(name="verify", user_instructions=params.user_instructions),
        BestOfNStageSpec(
            name="select",
            score_name="checks",
            min_sft_score=params.min_sft_score,
            min_margin=params.min_margin,
        ),
    ]
