"""Stage implementations and the factory that builds them from a validated spec."""

from assay.errors import AssayError
from datagen.spec import (
    BestOfNStageSpec,
    ExecuteStageSpec,
    GenerateStageSpec,
    IFEvalVerifyStageSpec,
    LoadedSpec,
    RenderStageSpec,
    ScoreStageSpec,
    StageSpec,
    TeacherSpec,
)
from datagen.stages.base import ERROR_COLUMNS, Stage
from datagen.stages.generate import GenerateStage, Route, Teacher
from datagen.stages.render import RenderStage
from datagen.stages.select import BestOfNStage
from datagen.stages.verify import IFEvalVerifyStage
from datagen.templates import PromptTemplate
from model_store import ModelStore, ModelStoreError

__all__ = ["ERROR_COLUMNS", "Stage", "build_stages", "check_columns"]


def _teacher(spec: TeacherSpec, where: str, loaded: LoadedSpec, store: ModelStore) -> Teacher:
    """Resolve a teacher's local model (hf, vllm) now, so a missing one fails before any work."""
    engine = spec.engine
    route = Route(spec.route.column, tuple(spec.route.values)) if spec.route else None
    if engine.backend == "openai":
        return Teacher(spec.name or engine.model, engine, None, route)
    ref = engine.model
    if not store.has(ref) and ("/" in ref or ref.endswith(".gguf")):
        ref = str(loaded.resolve(ref))  # a path in a spec is relative to the spec file
    try:
        model = store.resolve(ref)
    except ModelStoreError as err:
        raise AssayError(f"{loaded.path}: {where}.engine.model: {err}") from err
    return Teacher(spec.name or engine.model, engine, model, route)


def build_stage(
    spec: StageSpec, index: int, loaded: LoadedSpec, store: ModelStore, cache_uri: str | None = None
) -> Stage:
    """Build one stage, resolving its templates and models (which fail here if missing)."""
    name = spec.name or f"{index}-{spec.type}"
    if isinstance(spec, RenderStageSpec):
        system = PromptTemplate(loaded.resolve(spec.system)) if spec.system else None
        return RenderStage(name, PromptTemplate(loaded.resolve(spec.template)), system, spec.output)
    if isinstance(spec, GenerateStageSpec):
        teachers = [
            _teacher(teacher, f"stages.{index}" + (f".teachers.{n}" if spec.teachers else ""), loaded, store)
            for n, teacher in enumerate(spec.teacher_specs())
        ]
        return GenerateStage(name, teachers, spec.sampling, spec.input, spec.output, cache_uri)
    if isinstance(spec, IFEvalVerifyStageSpec):
        return IFEvalVerifyStage(name, spec.completions, spec.output)
    if isinstance(spec, BestOfNStageSpec):
        return BestOfNStage(
            name, spec.prompt, spec.completions, spec.scores, spec.score_name,
            spec.min_sft_score, spec.min_margin,
        )  # fmt: skip
    if isinstance(spec, ScoreStageSpec):
        return _score_stage(spec, name, index, loaded, store)
    if isinstance(spec, ExecuteStageSpec):
        from datagen.stages.execute import ExecuteStage

        return ExecuteStage(
            name, spec.program or spec.completions, spec.language, spec.tests, spec.extract, spec.scores,
            spec.sandbox, spec.actors, spec.batch_size, spec.max_concurrency, list_input=spec.program is None,
        )  # fmt: skip
    raise AssayError(f"{loaded.path}: stages.{index}: no implementation for {spec.type!r}")


def _score_stage(spec: ScoreStageSpec, name: str, index: int, loaded: LoadedSpec, store: ModelStore) -> Stage:
    """A reward-model scoring stage; the model is resolved now, so a missing one fails early."""
    from datagen.stages.score import ScoreStage

    ref = spec.model
    if not store.has(ref) and "/" in ref:
        ref = str(loaded.resolve(ref))  # a path in a spec is relative to the spec file
    try:
        model = store.resolve(ref)
    except ModelStoreError as err:
        raise AssayError(f"{loaded.path}: stages.{index}.model: {err}") from err
    return ScoreStage(
        name, model, spec.prompt, spec.completion, spec.output, spec.per_completion,
        spec.batch_size, spec.max_length, spec.concurrency, spec.num_cpus,
    )  # fmt: skip


def build_stages(loaded: LoadedSpec, store: ModelStore, cache_uri: str | None = None) -> list[Stage]:
    """Build every stage of a spec; generate stages use the LLM-call cache at `cache_uri`."""
    return [build_stage(spec, i, loaded, store, cache_uri) for i, spec in enumerate(loaded.spec.stages)]


def check_columns(stages: list[Stage], source_columns: list[str], spec_path: str) -> list[str]:
    """Check that each stage reads only columns the source or an earlier stage provides.

    Returns:
        The columns available after the last stage.

    Raises:
        AssayError: naming the stage and the missing column, before any model starts.
    """
    available = list(source_columns)
    for stage in stages:
        missing = [column for column in stage.reads if column not in available]
        if missing:
            raise AssayError(
                f"{spec_path}: stage {stage.name!r} reads {', '.join(map(repr, missing))}, which "
                f"neither the source nor an earlier stage provides; available: {', '.join(available)}"
            )
        available += [column for column in stage.writes if column not in available]
    return available
