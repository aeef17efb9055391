"""The stages: each module owns a spec and the stage built from it, registered by `type`.

Importing this package registers the built-in stages (the import list below). Adding a stage is
one new module with a `@register_stage` class plus its name in that list; see
docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assay.errors import AssayError
from datagen.stages import (  # noqa: F401 - each registers its stage
    augment,
    code_problems,
    code_select,
    decontaminate,
    execute,
    fragment,
    generate,
    judge,
    language_check,
    personas,
    preambles,
    qa_select,
    rank_select,
    reformulate,
    render,
    repair,
    safety_select,
    score,
    select,
    sql_reference,
    synthesize_tests,
    teacher_pool,
    translation,
    verify,
)
from datagen.stages.base import ERROR_COLUMNS, BuildContext, Stage, StageSpec
from datagen.stages.registry import register_stage, registered_stages

if TYPE_CHECKING:
    from datagen.spec import LoadedSpec
    from model_store import ModelStore

__all__ = [
    "ERROR_COLUMNS",
    "BuildContext",
    "Stage",
    "StageSpec",
    "build_stage",
    "build_stages",
    "check_columns",
    "register_stage",
    "registered_stages",
]


def build_stage(spec: StageSpec, context: BuildContext) -> Stage:
    """The stage a spec names, built by its registered class (templates and models resolve here,
    so a missing one fails before any work).

    Raises:
        AssayError: no stage is registered for the spec's type.
    """
    stage_class = registered_stages().get(spec.type)
    if stage_class is None:
        raise AssayError(f"{context.field('type')}: no stage is registered for {spec.type!r}")
    return stage_class(spec, context)


def build_stages(loaded: LoadedSpec, store: ModelStore, cache_uri: str | None = None) -> list[Stage]:
    """Build every stage of a spec; generate stages use the LLM-call cache at `cache_uri`."""
    return [
        build_stage(spec, BuildContext(loaded.path, store, cache_uri, index))
        for index, spec in enumerate(loaded.spec.stages)
    ]


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
