"""Safety data from personas (Command A report, 3.3.7).

Source rows carry a `prompt`, a `should_refuse` label and a `core_area` (the core safety area a
request touches, or null). For each row: draw a persona and a safety mode (`persona_sample`) →
an LLM rewrites the request in the persona's voice (`render` + `generate`) → the rewrite
replaces the request when a similarity check passes (`reformulation_check`) → the mode's
preamble becomes the system turn and the teacher samples N completions (`render` +
`generate`) → (a reward model scores them) → `safety_select` keeps a refusal without apology
for rows that should be refused and a helpful answer for the others, the opposite behaviour as
the rejected side.

The two sets (should-refuse and should-comply) stay apart: every row records `should_refuse`,
`mode` and `persona` (in `scores` of the sft and preference outputs; as columns in a generic
output) and the select stage reports their ratio in the job's lineage.
"""

from pathlib import Path
from typing import Any

from pydantic import Field

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.common import over_defaults, render_and_generate, sampling_field, score_completions
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.personas import PersonaStageSpec
from datagen.stages.reformulate import ReformulationCheckStageSpec
from datagen.stages.safety_select import SafetySelectStageSpec

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_SAMPLING: dict[str, Any] = {"n": 4, "temperature": [0.3, 0.7, 1.0, 1.3]}
DEFAULT_REFORMULATION: dict[str, Any] = {"n": 2, "temperature": 0.7, "max_tokens": 96}


class SafetyParams(StrictModel):
    """Parameters of the safety recipe."""

    personas: str = Field(
        description="Persona library: a JSONL file (relative to the spec) or `dataset:NAME[@V]`."
    )
    seed: int = Field(0, description="Seed of the persona and mode draws.")
    strict_fraction: float = Field(0.3, ge=0.0, le=1.0, description="Share of rows in `strict` mode.")
    engine: EngineConfig = Field(
        default_factory=HFEngineConfig, description="The teacher's engine (both generations)."
    )
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING,
        "Sampling of the answers, over the recipe's defaults (n 4, temperatures 0.3/0.7/1.0/1.3)",
    )
    reformulate: bool = Field(True, description="Rewrite each request in its persona's voice first.")
    reformulation_template: str | None = Field(
        None, description="User-turn template asking for the rewrite (default: the recipe's own)."
    )
    reformulation_sampling: SamplingConfig = sampling_field(
        DEFAULT_REFORMULATION,
        "Sampling of the rewrite, over the recipe's defaults (n 2, temperature 0.7, 96 tokens); "
        "the first rewrite that passes is used.",
    )
    min_similarity: float = Field(
        0.5, ge=0.0, le=1.0, description="Least share of content words a rewrite keeps."
    )
    reward_model: str | None = Field(
        None, description="A reward model ranking candidates of the preferred behaviour."
    )
    repair_apologies: bool = Field(True, description="Keep an apologising refusal with its apology removed.")
    fallback_refusal: str | None = Field(
        None, description="Refusal used when the teacher never refused a should-refuse row (none: no data)."
    )

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)
    _reformulation_sampling = over_defaults("reformulation_sampling", DEFAULT_REFORMULATION)


@register_recipe("safety")
def safety(params: SafetyParams) -> list[StageSpec]:
    """The stages of the safety recipe: personas, reformulation, generation, selection."""
    stages: list[StageSpec] = [
        PersonaStageSpec(
            name="personas",
            personas=params.personas,
            seed=params.seed,
            strict_fraction=params.strict_fraction,
        )
    ]
    if params.reformulate:
        stages += [
            *render_and_generate(
                params.reformulation_template or str(TEMPLATES / "safety_reformulate.j2"),
                params.reformulation_sampling,
                engine=params.engine,
                names=("render-reformulation", "reformulate"),
                messages="reformulation_messages",
                output="reformulations",
            ),
            ReformulationCheckStageSpec(name="reformulation-check", min_similarity=params.min_similarity),
        ]
    user = "safety_user.j2" if params.reformulate else "safety_user_original.j2"
    stages += render_and_generate(
        str(TEMPLATES / user),
        params.sampling,
        system=str(TEMPLATES / "safety_system.j2"),
        engine=params.engine,
    )
    if params.reward_model:
        stages.append(score_completions(params.reward_model))
    stages.append(
        SafetySelectStageSpec(
            name="select",
            rewards="rewards" if params.reward_model else None,
            repair_apologies=params.repair_apologies,
            fallback_refusal=params.fallback_refusal,
        )
    )
    return stages
