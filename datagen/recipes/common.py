"""What several recipes wire the same way: sampling params over a recipe's defaults, render then
generate, and the reward-model stages (score every completion, then rank by reward)."""

from typing import Any

from pydantic import Field, field_validator

from assay.config import StrictModel
from datagen.engines.config import EngineConfig, SamplingConfig
from datagen.stages.base import StageSpec
from datagen.stages.generate import GenerateStageSpec, TeacherSpec
from datagen.stages.rank_select import RankSelectStageSpec
from datagen.stages.render import RenderStageSpec
from datagen.stages.score import ScoreStageSpec


def sampling_field(defaults: dict[str, Any], description: str) -> Any:
    """A params field of sampling settings whose default is the recipe's `defaults`."""
    return Field(default_factory=lambda: SamplingConfig.model_validate(defaults), description=description)


def over_defaults(field: str, defaults: dict[str, Any]) -> Any:
    """A params validator: a mapping given for `field` is read over the recipe's `defaults`, so
    a spec names only the sampling settings it changes."""

    def merge(cls: type, value: Any) -> Any:
        return {**defaults, **value} if isinstance(value, dict) else value

    return field_validator(field, mode="before")(classmethod(merge))


def render_and_generate(
    template: str,
    sampling: SamplingConfig,
    *,
    system: str | None = None,
    engine: EngineConfig | None = None,
    teachers: list[TeacherSpec] | None = None,
    names: tuple[str, str] = ("render", "generate"),
    messages: str = "prompt_messages",
    output: str = "completions",
) -> list[StageSpec]:
    """Render each row's conversation into `messages`, then sample completions of it into `output`
    (stages named `names`)."""
    render, generate = names
    return [
        RenderStageSpec(name=render, template=template, system=system, output=messages),
        GenerateStageSpec(
            name=generate, input=messages, output=output, engine=engine, teachers=teachers, sampling=sampling
        ),
    ]


def score_completions(
    model: str, name: str = "reward", output: str = "rewards", **options: Any
) -> ScoreStageSpec:
    """A `score` stage: the reward model `model` scores every completion into `output`; `options`
    are further score-stage fields (max_length, batch_size, num_cpus, ...)."""
    return ScoreStageSpec(
        name=name, model=model, completion="completions", output=output, per_completion=True, **options
    )


class RewardRankParams(StrictModel):
    """The params of a recipe that ranks completions with a reward model (arbitrage, best-of-N)."""

    reward_model: str | None = Field(
        None, description="A reward model (`assay train rm`) or an HF folder that scores every completion."
    )
    score_max_length: int = Field(1024, ge=8, description="Tokens per sample the reward model scores.")
    score_batch_size: int = Field(16, ge=1, description="Rows per reward-model batch.")
    score_num_cpus: float = Field(
        0.5,
        gt=0,
        description="CPUs the reward-model actor reserves. Every stage's actors run at once, so with "
        "the teachers' they must fit Ray's CPUs (the job refuses a plan that does not); 0.5 beside a "
        "0.5-CPU teacher fits a 2-CPU Ray reading a registered dataset.",
    )
    min_reward: float | None = Field(
        None, description="Prompts whose best reward is below this give no data."
    )
    min_mean_reward: float | None = Field(
        None, description="Prompts whose mean reward is below this give no data (report 3.5)."
    )
    min_margin: float = Field(0.0, ge=0.0, description="Preference pairs need best - worst > this.")


def reward_stages(params: RewardRankParams, **select: Any) -> list[StageSpec]:
    """`reward` (the reward model scores every completion into `rewards`), then `select`: a
    `rank_select` stage with the params' reward thresholds and the further fields `select`.

    Raises:
        ValueError: the params name no reward model.
    """
    if params.reward_model is None:
        raise ValueError("reward_stages needs `reward_model`")
    return [
        score_completions(
            params.reward_model,
            max_length=params.score_max_length,
            batch_size=params.score_batch_size,
            num_cpus=params.score_num_cpus,
        ),
        RankSelectStageSpec(
            name="select",
            rewards="rewards",
            min_reward=params.min_reward,
            min_mean_reward=params.min_mean_reward,
            min_margin=params.min_margin,
            **select,
        ),
    ]
