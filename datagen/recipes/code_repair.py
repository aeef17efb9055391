"""Repair with execution feedback (Command A report, 3.3.4): programs that fail their tests go back
to the model with the sandbox's feedback, up to `rounds` times; trajectories that end passing
become multi-turn SFT data, and each fix against its broken program a preference pair.

Unrolled into ordinary stages (datagen/stages/repair.py): render -> generate -> execute, then per
round repair_feedback -> generate (only rows that still fail) -> execute, then repair_select.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, HFEngineConfig, SamplingConfig
from datagen.recipes.common import over_defaults, render_and_generate, sampling_field
from datagen.recipes.registry import register_recipe
from datagen.stages.base import StageSpec
from datagen.stages.execute import ExecuteStageSpec
from datagen.stages.generate import GenerateStageSpec, RouteSpec, TeacherSpec
from datagen.stages.repair import REPAIR, RepairFeedbackStageSpec, RepairSelectStageSpec
from sandbox.config import SandboxConfig

DEFAULT_SAMPLING: dict[str, Any] = {"n": 2, "temperature": [0.7, 1.0], "max_tokens": 384}
DEFAULT_FIX_SAMPLING: dict[str, Any] = {"n": 2, "temperature": [0.3, 0.8], "max_tokens": 384}


class CodeRepairParams(StrictModel):
    """Parameters of the code-repair recipe."""

    template: str = Field(description="User-turn template file, relative to the spec file.")
    system: str | None = Field(None, description="Optional system-turn template file.")
    engine: EngineConfig = Field(
        default_factory=HFEngineConfig, description="The engine that writes and fixes."
    )
    sampling: SamplingConfig = sampling_field(
        DEFAULT_SAMPLING,
        "First attempts, over the recipe's defaults (n 2, temperatures 0.7/1.0, 384 tokens).",
    )
    fix_sampling: SamplingConfig = sampling_field(
        DEFAULT_FIX_SAMPLING, "Fixes per round, over the defaults (n 2: the best fix carries on)."
    )
    rounds: int = Field(2, ge=1, le=8, description="Repair rounds at most (K).")
    feedback_chars: int = Field(1500, ge=200, description="Longest feedback turn, in characters.")
    sandbox: SandboxConfig = Field(
        default_factory=lambda: SandboxConfig(pool_size=2),
        description="The sandbox each execute actor opens.",
    )
    max_concurrency: int = Field(8, ge=1, description="Executions in flight across all actors, per stage.")

    _sampling = over_defaults("sampling", DEFAULT_SAMPLING)
    _fix_sampling = over_defaults("fix_sampling", DEFAULT_FIX_SAMPLING)


@register_recipe("code_repair")
def code_repair(params: CodeRepairParams) -> list[StageSpec]:
    """First attempts, then `rounds` of feedback -> fix -> execute, then the selection."""

    def execute(name: str, completions: str, scores: str) -> ExecuteStageSpec:
        return ExecuteStageSpec(
            name=name, completions=completions, scores=scores, sandbox=params.sandbox,
            max_concurrency=params.max_concurrency,
        )  # fmt: skip

    stages: list[StageSpec] = [
        *render_and_generate(params.template, params.sampling, system=params.system, engine=params.engine),
        execute("execute", "completions", "completion_scores"),
    ]
    previous, state = "completions", None
    for k in range(1, params.rounds + 1):
        stages += [
            RepairFeedbackStageSpec(
                name=f"feedback-{k}", completions=previous, state_in=state, state_out=f"repair_state_{k}",
                output=f"repair_messages_{k}", route=f"repair_route_{k}",
                feedback_chars=params.feedback_chars,
            ),
            GenerateStageSpec(
                name=f"fix-{k}", input=f"repair_messages_{k}", output=f"repair_completions_{k}",
                teachers=[TeacherSpec(engine=params.engine,
                                      route=RouteSpec(column=f"repair_route_{k}", values=[REPAIR]))],
                sampling=params.fix_sampling,
            ),
            execute(f"execute-{k}", f"repair_completions_{k}", f"repair_scores_{k}"),
        ]  # fmt: skip
        previous, state = f"repair_completions_{k}", f"repair_state_{k}"
    stages.append(RepairSelectStageSpec(name="select", state_in=state or "", completions=previous))
    return stages
