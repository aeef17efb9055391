"""Multilingual arbitrage (Aya Expanse; Odumakinde et al., arXiv:2408.14960; Command A, 3.3.3.2).

For each prompt, every teacher of the pool whose route covers its language samples; the
completions in the wrong language are flagged (never chosen); a reward model scores every
completion; the best becomes SFT data and best vs worst a preference pair. Prompts whose best
reward is below `min_reward` give no data and ties give no pair. The job's lineage records, per
language and teacher, the share of prompts each teacher won. `selection: single_teacher` keeps
only one teacher's completions: the baseline arbitrage is measured against.
"""

from typing import Any, Literal

from pydantic import Field, model_validator

from datagen.engines.config import SamplingConfig
from datagen.recipes.common import RewardRankParams, over_defaults, reward_stages, sampling_field
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.language_check import LanguageCheckStageSpec
from datagen.stages.render import RenderStageSpec
from datagen.stages.teacher_pool import PoolTeacherSpec, TeacherPoolStageSpec

DEFAULT_SAMPLING: dict[str, Any] = {"n": 2, "temperature": [0.7, 1.0]}


class ArbitrageParams(RewardRankParams):
    """Parameters of the arbitrage recipe."""

    template: str = Field(description="User-turn template file, relative to the spec file.")
    system: str | None = Field(None, description="Optional system-turn template file.")
    teachers: list[PoolTeacherSpec] = Field(
        min_length=1,
        description="The teacher pool; each may route by `language` and set its own system message.",
    )
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING,
        "Sampling fields over the recipe's defaults (n 2, temperatures 0.7/1.0), per teacher.",
    )
    reward_model: str = Field(description="The arbiter: a reward model (`assay train rm`) or an HF folder.")
    language: str = Field("language", description="Column with each prompt's language (ISO 639-1).")
    language_check: bool = Field(True, description="Never choose a completion in the wrong language.")
    follow_instructions: bool = Field(
        False,
        description="An IFEval `response_language` instruction sets the expected language (reads "
        "`instruction_id_list` and `kwargs`).",
    )
    selection: Literal["reward", "single_teacher"] = Field(
        "reward", description="`reward`: best over the pool; `single_teacher`: only `teacher` (baseline)."
    )
    teacher: str | None = Field(None, description="The teacher of the single-teacher baseline.")

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)

    @model_validator(mode="after")
    def _baseline_teacher(self) -> "ArbitrageParams":
        names = [t.name or t.engine.model for t in self.teachers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"teacher names must be unique; repeated: {', '.join(repeated)}")
        if self.selection == "single_teacher" and self.teacher not in names:
            raise ValueError(f"selection single_teacher needs `teacher`, one of: {', '.join(names)}")
        return self


@register_recipe("arbitrage")
def arbitrage(params: ArbitrageParams) -> list[StageSpec]:
    """The stages of arbitrage: render, teacher pool, language check, reward model, select."""
    stages: list[StageSpec] = [
        RenderStageSpec(name="render", template=params.template, system=params.system),
        TeacherPoolStageSpec(name="teachers", teachers=params.teachers, sampling=params.sampling),
    ]
    if params.language_check:
        stages.append(
            LanguageCheckStageSpec(
                name="language", language=params.language, follow_instructions=params.follow_instructions
            )
        )
    return stages + reward_stages(
        params,
        teachers="completion_teachers",
        language=params.language,
        language_ok="language_ok" if params.language_check else None,
        only_teacher=params.teacher if params.selection == "single_teacher" else None,
    )
