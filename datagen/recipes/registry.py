"""The recipe registry: a recipe is a typed function from its params model to stage specs.

`@register_recipe("name")` on `def recipe(params: SomeParams) -> list[StageSpec]` makes
`recipe: {name: ..., params: {...}}` valid in pipeline specs; the params model is read from the
function's annotation, so it is declared once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_type_hints

from pydantic import BaseModel

if TYPE_CHECKING:
    from datagen.stages.base import StageSpec

RecipeFunction = Callable[[Any], "list[StageSpec]"]


@dataclass(frozen=True)
class Recipe:
    """A registered recipe: its name, its params model and the function that expands it."""

    name: str
    params: type[BaseModel]
    expand: RecipeFunction


_RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str) -> Callable[[RecipeFunction], RecipeFunction]:
    """Register the decorated function as the recipe `name`.

    Raises:
        TypeError: its one parameter is not annotated with a pydantic model, or `name` is taken.
    """

    def register(function: RecipeFunction) -> RecipeFunction:
        hints = get_type_hints(function)
        hints.pop("return", None)
        params = next(iter(hints.values()), None) if len(hints) == 1 else None
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise TypeError(f"recipe {name!r}: its one parameter must be annotated with a pydantic model")
        if name in _RECIPES and _RECIPES[name].expand is not function:
            raise TypeError(f"recipe {name!r} is already registered")
        _RECIPES[name] = Recipe(name, params, function)
        return function

    return register


def unregister_recipe(name: str) -> None:
    """Remove a recipe (for tests that register a toy one)."""
    _RECIPES.pop(name, None)


def registered_recipes() -> dict[str, Recipe]:
    """Every registered recipe by name."""
    return dict(_RECIPES)
