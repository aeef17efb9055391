"""Every field of every YAML-facing config model has a description, so `assay` can document
each one and a reader of a spec never meets an unexplained key."""

import inspect
from types import UnionType
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel

import reward_model.config
import sandbox.config
import trainer.config
import trainer.merging.config
from datagen.recipes import registered_recipes
from datagen.spec import pipeline_spec_model

ROOTS: list[type[BaseModel]] = [
    pipeline_spec_model(),
    *(recipe.params for recipe in registered_recipes().values()),
    trainer.config.TrainConfig,
    trainer.merging.config.MergeConfig,
    trainer.merging.config.SearchConfig,
    reward_model.config.RMConfig,
    sandbox.config.SandboxConfig,
]


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through unions, lists, dicts, Annotated)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Annotated,):
        return _models_in(get_args(annotation)[0])
    found: list[type[BaseModel]] = []
    if get_origin(annotation) in (Union, UnionType, list, dict, tuple) or get_args(annotation):
        for arg in get_args(annotation):
            found += _models_in(arg)
    return found


def all_config_models() -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    todo = list(ROOTS)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for field in model.model_fields.values():
            todo += _models_in(field.annotation)
    return seen


def test_the_walk_reaches_nested_models() -> None:
    names = {model.__name__ for model in all_config_models()}
    expected = {"GenerateStageSpec", "TeacherSpec", "RouteSpec", "SamplingConfig", "VLLMEngineConfig"}
    expected |= {"OpenAIEngineConfig", "HFEngineConfig", "ExecuteStageSpec", "OutputSpec", "StageConfig"}
    assert expected <= names, expected - names
    assert len(names) >= 25


def test_every_config_field_has_a_description() -> None:
    missing = [
        f"{model.__module__}.{model.__qualname__}.{name}"
        for model in all_config_models()
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not missing, "fields without a description:\n" + "\n".join(sorted(missing))
