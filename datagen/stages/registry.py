"""The stage registry: one place that maps a spec's `type` to the stage that implements it.

A stage class registers itself with `@register_stage`; the pipeline spec's union of stage specs
is built from this registry (datagen/spec.py), so a registered type is valid in YAML at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, get_args

if TYPE_CHECKING:
    from datagen.stages.base import Stage

_STAGES: dict[str, type[Stage]] = {}

StageT = TypeVar("StageT", bound="type[Stage]")


def stage_type(stage: type[Stage]) -> str:
    """The `type` literal of a stage's spec class."""
    annotation = stage.spec_class.model_fields["type"].annotation
    values = get_args(annotation)
    if len(values) != 1 or not isinstance(values[0], str):
        raise TypeError(f"{stage.spec_class.__name__}.type must be one Literal string, e.g. Literal['toy']")
    return values[0]


def register_stage(stage: StageT) -> StageT:
    """Register a stage class under its spec's `type` (use as a class decorator).

    Raises:
        TypeError: the spec has no single literal `type`, or another class holds that type.
    """
    name = stage_type(stage)
    holder = _STAGES.get(name)
    if holder is not None and holder is not stage:
        raise TypeError(f"stage type {name!r} is already registered by {holder.__qualname__}")
    _STAGES[name] = stage
    return stage


def unregister_stage(name: str) -> None:
    """Remove a stage type (for tests that register a toy stage)."""
    _STAGES.pop(name, None)


def registered_stages() -> dict[str, type[Stage]]:
    """Every registered stage by type, in registration order."""
    return dict(_STAGES)
