"""Best-of-N with programmatic verifiers (Command A report, 3.3.1 and 3.3.3).

For each prompt, sample N completions at varied temperatures, score each with the IFEval-style
verifiers, keep the best as SFT data and the best against the worst as a preference pair.
"""

from typing import Any

from pydantic import Field

from datagen.engines.config import EngineConfig, StrictModel

DEFAULT_SAMPLING: dict[str, Any] = {"n": 4, "temperature": [0.3, 0.7, 1.0, 1.3]}


class BestOfNParams(StrictModel):
    """Parameters of the best-of-N recipe."""

    template: str = Field(description="User-turn template file, relative to the spec file.")
    system: str | None = Field(None, description="Optional system-turn template file.")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sampling: dict[str, Any] = Field(
        default_factory=dict,
        description="Sampling fields over the recipe's defaults (n 4, temperatures 0.3/0.7/1.0/1.3).",
    )
    min_sft_score: float = Field(0.0, description="Best score an SFT row needs.")
    min_margin: float = Field(0.0, ge=0.0, description="Preference pairs need best - worst > this.")


def best_of_n(params: BestOfNParams) -> list[dict[str, Any]]:
    """The stages of best-of-N: render, generate, verify, select."""
    render: dict[str, Any] = {"type": "render", "name": "render", "template": params.template}
    if params.system is not None:
        render["system"] = params.system
    return [
        render,
        {
            "type": "generate",
            "name": "generate",
            "engine": params.engine.model_dump(),
            "sampling": {**DEFAULT_SAMPLING, **params.sampling},
        },
        {"type": "ifeval_verify", "name": "verify"},
        {
            "type": "best_of_n",
            "name": "select",
            "min_sft_score": params.min_sft_score,
            "min_margin": params.min_margin,
        },
    ]
