"""Long-context question answering (Command A report, 3.3.6).

Long documents (kind `documents`) → a random fragment of each that fits the generator
(`fragment`, counted with the generator's tokenizer; a row that cannot fit goes to the dead
letters with the numbers) → question-answer candidates from a pool (teachers × samples) → (a
reward model scores each) → `qa_select` keeps the best grounded pair and attaches it to the
**whole** document: an SFT row with the document and the question in the user turn and the
answer in the assistant turn, its length recorded against `training_length`.
"""

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, OpenAIEngineConfig, SamplingConfig
from datagen.recipes.common import over_defaults, render_and_generate, sampling_field, score_completions
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.fragment import FragmentStageSpec
from datagen.stages.generate import TeacherSpec
from datagen.stages.qa_select import QASelectStageSpec

TEMPLATE = Path(__file__).parent / "templates" / "long_context_qa.j2"
DEFAULT_SAMPLING: dict[str, Any] = {"n": 4, "temperature": [0.3, 0.7, 1.0, 1.3], "max_tokens": 128}


class LongContextParams(StrictModel):
    """Parameters of the long-context QA recipe."""

    template: str | None = Field(
        None, description="QA prompt template (variables `fragment`, `title`); default: the recipe's."
    )
    engine: EngineConfig | None = Field(None, description="The engine (default: hf with the default model).")
    teachers: list[TeacherSpec] | None = Field(
        None, min_length=1, description="A pool of engines instead of one."
    )
    tokenizer_model: str | None = Field(
        None,
        description="Model whose tokenizer and context bound the fragments (default: first local teacher).",
    )
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING,
        "Sampling over the recipe's defaults (n 4, temperatures 0.3/0.7/1.0/1.3, 128 tokens).",
    )
    max_fragment_tokens: int = Field(8192, ge=1, description="Longest fragment, in the generator's tokens.")
    min_fragment_tokens: int = Field(
        64, ge=1, description="A row with less room than this cannot fit: dead letter."
    )
    context_length: int | None = Field(
        None, ge=1, description="The generator's context (default: its config's)."
    )
    seed: int = Field(0, description="Seed of the fragment draws.")
    reward_model: str | None = Field(
        None, description="A reward model that picks the best pair; none: the most grounded."
    )
    score_max_length: int = Field(2048, ge=8, description="Tokens per sample the reward model scores.")
    min_grounding: float = Field(
        0.6, ge=0.0, le=1.0, description="Least share of the answer's content words in the fragment."
    )
    reject_title_answerable: bool = Field(True, description="Drop pairs whose answer is all in the title.")
    training_length: int | None = Field(
        None, ge=1, description="SFT rows longer than this (tokens) are flagged."
    )

    @model_validator(mode="after")
    def _one_engine_or_teachers(self) -> "LongContextParams":
        if self.engine is not None and self.teachers is not None:
            raise ValueError("give `engine` or `teachers`, not both")
        if self.tokenizer_model is None and not any(
            not isinstance(engine, OpenAIEngineConfig) for engine in self.engines()
        ):
            raise ValueError("with only openai teachers, name `tokenizer_model`")
        return self

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)

    def engines(self) -> list[EngineConfig]:
        """The engines of the pool (a lone engine as a pool of one)."""
        return [t.engine for t in self.teachers] if self.teachers else [self.engine or HFEngineConfig()]


@register_recipe("long_context_qa")
def long_context_qa(params: LongContextParams) -> list[StageSpec]:
    """The stages: fragment, render, generate, (score,) select."""
    local = [e for e in params.engines() if not isinstance(e, OpenAIEngineConfig)]
    model = params.tokenizer_model or local[0].model
    prompt_limits = [e.max_prompt_tokens for e in params.engines() if e.max_prompt_tokens is not None]
    template = params.template or str(TEMPLATE)
    stages: list[StageSpec] = [
        FragmentStageSpec(
            name="fragment",
            model=model,
            template=template,
            max_fragment_tokens=params.max_fragment_tokens,
            min_fragment_tokens=params.min_fragment_tokens,
            max_tokens=params.sampling.max_tokens,
            max_prompt_tokens=min(prompt_limits) if prompt_limits else None,
            context_length=params.context_length,
            seed=params.seed,
        ),
        *render_and_generate(template, params.sampling, engine=params.engine, teachers=params.teachers),
    ]
    if params.reward_model:
        stages.append(score_completions(params.reward_model, max_length=params.score_max_length))
    stages.append(
        QASelectStageSpec(
            name="select",
            rewards="rewards" if params.reward_model else None,
            min_grounding=params.min_grounding,
            reject_title_answerable=params.reject_title_answerable,
            model=model,
            training_length=params.training_length,
        )
    )
    return stages
