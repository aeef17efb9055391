"""Pipeline specs: YAML validated by pydantic. Unknown keys are rejected; errors name the field
and the file.

A spec lists its stages directly, or names a recipe and its params (a recipe expands into
stages before validation, so both forms are checked the same way).
"""

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, ValidationError, create_model, field_validator, model_validator

from assay.config import StrictModel, apply_overrides, describe_validation_error, read_yaml_mapping
from assay.errors import AssayError
from datagen.stages import StageSpec, registered_stages
from datasets_registry.errors import RegistryError
from datasets_registry.kinds import Kind
from datasets_registry.refs import check_name


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
    stall_timeout_s: float = Field(
        6 * 3600,
        description="Fail the job when no block moves through it for this long (-1: never). Ray "
        "Data's own default, 1800 s, is shorter than one batch of long generations on a CPU.",
    )

    @field_validator("stall_timeout_s")
    @classmethod
    def _positive_or_never(cls, value: float) -> float:
        if value <= 0 and value != -1:
            raise ValueError("give a number of seconds above 0, or -1 for never")
        return value


class PipelineSpec(StrictModel):
    """A generation job: source rows, stages, and the datasets it registers."""

    name: DatasetName = Field(description="Pipeline name (used for job ids and the dead-letter dataset).")
    description: str = Field("", description="What the pipeline makes, for people reading the spec.")
    source: SourceSpec = Field(description="Where the input rows come from.")
    stages: list[StageSpec] = Field(
        min_length=1, description="The stages, in order; each `type` is a registered stage."
    )
    outputs: list[OutputSpec] = Field(min_length=1, description="The datasets the job registers.")
    dead_letter: DatasetName | None = Field(
        None, description="Dead-letter dataset name; default `NAME-dead-letter`."
    )
    ray: RaySpec = Field(default_factory=RaySpec, description="Where the pipeline runs.")

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


def pipeline_spec_model() -> type[PipelineSpec]:
    """`PipelineSpec` whose `stages` are the union of every registered stage's spec, told apart
    by `type`: a stage registered at any time is valid in specs loaded after it."""
    return _with_stage_union(tuple(stage.spec_class for stage in registered_stages().values()))


@cache
def _with_stage_union(spec_classes: tuple[type[StageSpec], ...]) -> type[PipelineSpec]:
    union = Annotated[Union[spec_classes], Field(discriminator="type")]  # noqa: UP007 - a runtime tuple
    return create_model(
        "PipelineSpec",
        __base__=PipelineSpec,
        __doc__=PipelineSpec.__doc__,
        stages=(list[union], PipelineSpec.model_fields["stages"]),
    )


class LoadedSpec(StrictModel):
    """A validated spec with where it came from."""

    spec: PipelineSpec = Field(description="The validated spec.")
    path: Path = Field(description="The spec file.")
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
        spec = pipeline_spec_model().model_validate(expanded)
    except ValidationError as err:
        raise AssayError(describe_validation_error(err, path)) from err
    return LoadedSpec(spec=spec, path=path.resolve(), raw=raw)
