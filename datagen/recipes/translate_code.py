"""Translate verified Python problems into other languages (Command A report, 3.3.4: "Python-only
synthesis followed by translating code and unit tests").

translation_targets (one row per problem and target language) -> render (template
`templates/translate_code.j2`: the problem, the Python solution and tests, the language's test
shape) -> generate (each reply: the solution and the tests, two fenced blocks) ->
translation_check (in the sandbox: the translated solution passes the translated tests, and the
tests fail on a broken variant of it). Kept rows are `code` problems in the target language, for
`verified_code` and the other code recipes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.common import over_defaults, render_and_generate, sampling_field
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.translation import TranslationCheckStageSpec, TranslationTargetsStageSpec
from datagen.stages.translation_targets import check_targets
from sandbox.config import SandboxConfig

TEMPLATE = Path(__file__).parent / "templates" / "translate_code.j2"
DEFAULT_SAMPLING: dict[str, Any] = {"n": 2, "temperature": [0.2, 0.7], "max_tokens": 768}


class TranslateCodeParams(StrictModel):
    """Parameters of the code-translation recipe."""

    languages: list[str] = Field(
        min_length=1, description="Target languages (javascript, cpp; checked when the spec loads)."
    )
    template: str | None = Field(
        None, description="User-turn template, relative to the spec file (default: the recipe's own)."
    )
    system: str | None = Field(None, description="Optional system-turn template file.")
    engine: EngineConfig = Field(default_factory=HFEngineConfig, description="The engine that translates.")
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING, "Sampling over the recipe's defaults (n 2, temperatures 0.2/0.7, 768 tokens)."
    )
    min_tests: int = Field(1, ge=1, description="Tests a kept translation must have, at least.")
    prompt_tests: bool = Field(True, description="Quote the translated tests in the restated prompt.")
    sandbox: SandboxConfig = Field(
        default_factory=lambda: SandboxConfig(pool_size=2), description="The sandbox each check actor opens."
    )
    actors: int = Field(1, ge=1, description="Check actors, each with its own warm sandbox.")

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)

    @field_validator("languages")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        return check_targets(value)


@register_recipe("translate_code")
def translate_code(params: TranslateCodeParams) -> list[StageSpec]:
    """translation_targets -> render -> generate -> translation_check."""
    return [
        TranslationTargetsStageSpec(name="targets", languages=params.languages),
        *render_and_generate(
            params.template or str(TEMPLATE), params.sampling, system=params.system, engine=params.engine
        ),
        TranslationCheckStageSpec(
            name="translate",
            min_tests=params.min_tests,
            prompt_tests=params.prompt_tests,
            sandbox=params.sandbox,
            actors=params.actors,
        ),
    ]
