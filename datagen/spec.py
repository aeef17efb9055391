"""Pipeline specs: YAML validated by pydantic. Unknown keys are rejected; errors name the field
and the file.

A spec lists its stages directly, or names a recipe and its params (a recipe expands into
stages before validation, so both forms are checked the same way).
"""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from assay.config import apply_overrides, describe_validation_error, read_yaml_mapping
from assay.errors import AssayError
from datagen.engines.config import EngineConfig, SamplingConfig, StrictModel
from datasets_registry.errors import RegistryError
from datasets_registry.kinds import Kind
from datasets_registry.refs import check_name
from sandbox.config import SandboxConfig


class SourceSpec(StrictModel):
    """Where the input rows come from: a file (JSONL or Parquet) or a registered dataset."""

    path: str | None = Field(None, description="JSONL or Parquet file, relative to the spec file.")
    dataset: str | None = Field(None, description="Registry reference `name[@version|@tag]`.")
    limit: int | None = Field(None, ge=1, description="Use only the first N rows.")

    @model_validator(mode="after")
    def _one_source(self) -> "SourceSpec":
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of `path` or `dataset`")
        return self


class _StageBase(StrictModel):
    name: str | None = Field(None, description="Stage name in reports and dead letters.")


class RenderStageSpec(_StageBase):
    """Render a jinja2 template per row into a chat conversation."""

    type: Literal["render"]
    template: str = Field(description="User-turn template file, relative to the spec file.")
    system: str | None = Field(None, description="Optional system-turn template file.")
    output: str = Field("prompt_messages", description="Column for the conversation.")


class RouteSpec(StrictModel):
    """Send a row to a teacher only when its `column` holds one of `values`."""

    column: str = Field("language", description="Column to route on.")
    values: list[str] = Field(min_length=1, description="Values that go to this teacher.")


class TeacherSpec(StrictModel):
    """One model of a teacher pool."""

    name: str | None = Field(None, description="Teacher name in reports; default: the model.")
    engine: EngineConfig
    route: RouteSpec | None = Field(None, description="Which rows this teacher gets; default: all.")


class GenerateStageSpec(_StageBase):
    """Sample `n` completions per conversation with one engine, or with a pool of teachers."""

    type: Literal["generate"]
    input: str = Field("prompt_messages", description="Column holding the conversation.")
    output: str = Field("completions", description="Column for the list of completions.")
    engine: EngineConfig | None = Field(None, description="The engine (default: hf with the default model).")
    teachers: list[TeacherSpec] | None = Field(
        None, min_length=1, description="A pool of engines instead of one; every completion names its model."
    )
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)

    @model_validator(mode="after")
    def _one_engine_or_teachers(self) -> "GenerateStageSpec":
        if self.engine is not None and self.teachers is not None:
            raise ValueError("give `engine` or `teachers`, not both")
        return self

    def teacher_specs(self) -> list[TeacherSpec]:
        """The teachers, with a lone engine as a pool of one."""
        return self.teachers or [TeacherSpec(engine=self.engine or EngineConfig())]


class IFEvalVerifyStageSpec(_StageBase):
    """Score each completion by the fraction of the row's verifiable instructions it follows."""

    type: Literal["ifeval_verify"]
    completions: str = Field("completions", description="Column of completions to check.")
    output: str = Field("completion_scores", description="Column for one score per completion.")


class BestOfNStageSpec(_StageBase):
    """Pick the best completion (SFT) and best-vs-worst (preference) by score."""

    type: Literal["best_of_n"]
    prompt: str = Field("prompt_messages", description="Column holding the prompt conversation.")
    completions: str = Field("completions", description="Column of completions.")
    scores: str = Field("completion_scores", description="Column of scores, one per completion.")
    score_name: str = Field("ifeval", description="Name of the score in the `scores` column.")
    min_sft_score: float = Field(0.0, description="Best score an SFT row needs.")
    min_margin: float = Field(
        0.0, ge=0.0, description="A preference pair needs best - worst > this; ties are skipped."
    )


class ScoreStageSpec(_StageBase):
    """Add a reward per completion with a reward model (`assay train rm`), in a Ray actor pool."""

    type: Literal["score"]
    model: str = Field(description="Reward model: a stored model name or an HF folder.")
    prompt: str = Field("prompt_messages", description="Column holding the prompt (messages or text).")
    completion: str = Field("completion", description="Column holding the completion(s).")
    output: str = Field("reward", description="Column for the reward (a list with per_completion).")
    per_completion: bool = Field(False, description="The column holds a list of completions.")
    batch_size: int = Field(16, ge=1, description="Rows per batch sent to an actor.")
    max_length: int = Field(1024, ge=8, description="Tokens per sample; long prompts are cut from the left.")
    concurrency: int = Field(1, ge=1, description="Actors, each holding the model.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs each actor reserves.")


class ExecuteStageSpec(_StageBase):
    """Run programs (or each completion's code block) against the row's tests in the sandbox."""

    type: Literal["execute"]
    program: str | None = Field(
        None, description="Column with one program or completion per row; writes verdict, pass_rate, reward."
    )
    completions: str | None = Field(
        None, description="Column of completions (list of {text}); default `completions` without `program`."
    )
    language: str = Field("language", description="Column naming each row's language.")
    tests: str = Field("tests", description="Column with each row's tests, in the language's test format.")
    extract: bool = Field(True, description="Take the program from a fenced code block (False: bare code).")
    scores: str = Field("completion_scores", description="With `completions`: column for one reward each.")
    sandbox: SandboxConfig = Field(
        default_factory=lambda: SandboxConfig(pool_size=2), description="The sandbox each actor opens."
    )
    actors: int = Field(1, ge=1, description="Ray actors, each with its own warm sandbox.")
    batch_size: int = Field(16, ge=1, description="Rows per batch sent to an actor.")
    max_concurrency: int = Field(8, ge=1, description="Executions in flight at once across all actors.")

    @model_validator(mode="after")
    def _one_input(self) -> "ExecuteStageSpec":
        if self.program is not None and self.completions is not None:
            raise ValueError("give `program` or `completions`, not both")
        if self.program is None and self.completions is None:
            self.completions = "completions"
        return self


StageSpec = Annotated[
    RenderStageSpec
    | GenerateStageSpec
    | IFEvalVerifyStageSpec
    | BestOfNStageSpec
    | ScoreStageSpec
    | ExecuteStageSpec,
    Field(discriminator="type"),
]


def _dataset_name(value: str) -> str:
    try:
        return check_name(value)
    except RegistryError as err:
        raise ValueError(str(err)) from err


DatasetName = Annotated[str, AfterValidator(_dataset_name)]


class OutputSpec(StrictModel):
    """A registered dataset the job writes: the rows that fit `kind`."""

    dataset: DatasetName = Field(description="Dataset name in the registry.")
    kind: Kind = Field(description="Dataset kind; its required columns select the rows.")
    mode: Literal["overwrite", "append"] = Field(
        "overwrite", description="New version holds only this job's rows, or adds to the last."
    )


class RaySpec(StrictModel):
    """Where the pipeline runs."""

    address: str | None = Field(None, description="Ray cluster address; default: in-process.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for an in-process Ray.")


class PipelineSpec(StrictModel):
    """A generation job: source rows, stages, and the datasets it registers."""

    name: DatasetName = Field(description="Pipeline name (used for job ids and the dead-letter dataset).")
    description: str = ""
    source: SourceSpec
    stages: list[StageSpec] = Field(min_length=1)
    outputs: list[OutputSpec] = Field(min_length=1)
    dead_letter: DatasetName | None = Field(
        None, description="Dead-letter dataset name; default `NAME-dead-letter`."
    )
    ray: RaySpec = Field(default_factory=RaySpec)

    @model_validator(mode="after")
    def _distinct_datasets(self) -> "PipelineSpec":
        names = [output.dataset for output in self.outputs] + [self.dead_letter_dataset]
        _dataset_name(self.dead_letter_dataset)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"outputs and the dead-letter dataset must differ; repeated: {repeated}")
        return self

    @property
    def dead_letter_dataset(self) -> str:
        return self.dead_letter or f"{self.name}-dead-letter"


class LoadedSpec(StrictModel):
    """A validated spec with where it came from."""

    spec: PipelineSpec
    path: Path
    raw: dict[str, Any] = Field(description="The YAML after overrides, as written to lineage.")

    def resolve(self, relative: str) -> Path:
        """A path in the spec, relative to the spec file's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def load_spec(path: str | Path, overrides: list[str] | None = None) -> LoadedSpec:
    """Read, override, expand and validate a pipeline spec.

    Raises:
        AssayError: the file is missing or malformed, or a field is invalid (named with the file).
    """
    from datagen.recipes import expand_recipe

    path = Path(path)
    raw = read_yaml_mapping(path, "pipeline spec")
    apply_overrides(raw, overrides or [])
    expanded = expand_recipe(raw, path)
    try:
        spec = PipelineSpec.model_validate(expanded)
    except ValidationError as err:
        raise AssayError(describe_validation_error(err, path)) from err
    return LoadedSpec(spec=spec, path=path.resolve(), raw=raw)
