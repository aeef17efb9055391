"""Prompt augmentation (recipe `augment_prompts`): paraphrase, stricter, complexify.

Each mode expands to `augment_prepare` → `generate` → `augment_check` (datagen/stages/augment.py):

- **paraphrase**: a model rewrites the prompt; kept when `reformulation_check`'s rules pass (same
  content words, other wording, a sensible length, no refusal), no words of the template leak
  and every number and quoted phrase is kept.
- **stricter**: verifiable IFEval requirements are injected deterministically (seeded per row)
  into the prompt and the row's `instruction_id_list`/`kwargs`, so `ifeval_verify` verifies
  them downstream; with `phrase_with_model`, a model rewrites the prompt so they read naturally,
  kept only when every requirement's wording survives (no model stage otherwise).
- **complexify**: Evol-Instruct's in-depth evolving (Xu et al., "WizardLM: Empowering Large
  Language Models to Follow Complex Instructions", 2023, arXiv:2304.12244): one template per
  operation (add constraints, deepen, concretize, increase reasoning steps), drawn per row, and
  the paper's elimination of failed evolutions (no gain over the original, copies, leaked
  template words such as "#Rewritten Prompt#", refusals), plus a topic check.

The accepted text becomes the row's `prompt`; the original stays in `original_prompt`, the mode
in `augment_mode`. Rejected rows are dropped (or kept with a null prompt: `drop_rejected:
false`); the check stage writes the survival counts into the lineage.
"""

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.common import over_defaults, sampling_field
from datagen.recipes.registry import register_recipe
from datagen.stages.augment import (
    DEFAULT_TEMPLATES,
    OPERATIONS,
    ROUTE_MODEL,
    AugmentCheckStageSpec,
    AugmentPrepareStageSpec,
    Mode,
)
from datagen.stages.augment_constraints import REQUIREMENTS
from datagen.stages.base import StageSpec
from datagen.stages.generate import GenerateStageSpec, RouteSpec, TeacherSpec

DEFAULT_SAMPLING: dict[str, Any] = {"n": 2, "temperature": [0.7, 1.0], "top_p": 0.95, "max_tokens": 256}


class AugmentParams(StrictModel):
    """Parameters of the prompt-augmentation recipe."""

    mode: Mode = Field(
        description="paraphrase, stricter (injected verifiable requirements) or complexify (Evol-Instruct)."
    )
    prompt: str = Field(
        "prompt", description="Column holding the prompt; the accepted augmentation replaces it."
    )
    engine: EngineConfig = Field(
        default_factory=HFEngineConfig,
        description="The model that rewrites prompts (unused: stricter without a model).",
    )
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING,
        "Sampling of the rewrites, over the recipe's defaults (n 2, temperatures 0.7/1.0, top_p 0.95, "
        "256 tokens); the first rewrite that passes is used.",
    )
    seed: int = Field(0, description="Seed of the per-row draws (operation, requirements and their kwargs).")
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="Own template files over the built-in ones (datagen/recipes/templates/augment_*.j2): "
        "`paraphrase`, `stricter`, or one per complexify operation.",
    )
    operations: list[Literal["add_constraints", "deepen", "concretize", "increase_reasoning"]] = Field(
        default_factory=lambda: list(OPERATIONS),
        min_length=1,
        description="complexify: the in-depth evolutions drawn from, one per row.",
    )
    constraints: list[str] = Field(
        default_factory=lambda: sorted(REQUIREMENTS),
        min_length=1,
        description="stricter: IFEval ids to inject from (datagen/stages/augment_constraints.py).",
    )
    count: int = Field(1, ge=1, le=4, description="stricter: requirements injected per prompt.")
    language_column: str | None = Field(
        "language",
        description="Column naming the prompt's natural language; null for code problems (English).",
    )
    phrase_with_model: bool = Field(
        False, description="stricter: a model rephrases the prompt so the requirements read naturally."
    )
    drop_rejected: bool = Field(
        True, description="Drop rows no rewrite passed (else keep them, prompt null)."
    )
    min_similarity: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Least share of the original's content words a rewrite keeps (default: the mode's).",
    )
    min_new_words: int = Field(3, ge=0, description="complexify: content words an evolution must add.")

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)

    @model_validator(mode="after")
    def _template_names(self) -> "AugmentParams":
        names = set(DEFAULT_TEMPLATES[self.mode])
        if extra := sorted(set(self.templates) - names):
            used = ", ".join(sorted(names))
            raise ValueError(f"templates {extra} are not used in mode {self.mode}; names: {used}")
        return self

    @field_validator("constraints")
    @classmethod
    def _injectable(cls, value: list[str]) -> list[str]:
        if unknown := sorted(set(value) - set(REQUIREMENTS)):
            raise ValueError(f"{unknown} cannot be injected; known: {', '.join(sorted(REQUIREMENTS))}")
        return value


@register_recipe("augment_prompts")
def augment_prompts(params: AugmentParams) -> list[StageSpec]:
    """prepare → generate (skipped for stricter without a model) → check."""
    stages: list[StageSpec] = [
        AugmentPrepareStageSpec(
            name="augment-prepare",
            mode=params.mode,
            prompt=params.prompt,
            templates=params.templates,
            operations=params.operations,
            seed=params.seed,
            constraints=params.constraints,
            count=params.count,
            phrase_with_model=params.phrase_with_model,
            language_column=params.language_column,
        )
    ]
    uses_model = params.mode != "stricter" or params.phrase_with_model
    if uses_model:
        stages.append(
            GenerateStageSpec(
                name="augment-generate",
                input="augment_messages",
                output="augment_candidates",
                # Rows without a rewrite request (no requirement fitted) are routed past the model.
                teachers=[
                    TeacherSpec(
                        engine=params.engine, route=RouteSpec(column="augment_route", values=[ROUTE_MODEL])
                    )
                ],
                sampling=params.sampling,
            )
        )
    stages.append(
        AugmentCheckStageSpec(
            name="augment-check",
            mode=params.mode,
            prompt=params.prompt,
            candidates="augment_candidates" if uses_model else None,
            drop_rejected=params.drop_rejected,
            min_similarity=params.min_similarity,
            min_new_words=params.min_new_words,
        )
    )
    return stages
