"""Recipes: plain functions that wire the stages of one method from typed params.

A spec names one as `recipe: {name: ..., params: {...}}` instead of listing `stages`.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from assay.errors import AssayError
from datagen.recipes.best_of_n import BestOfNParams, best_of_n

RECIPES: dict[str, tuple[type[BaseModel], Callable[[Any], list[dict[str, Any]]]]] = {
    "best_of_n": (BestOfNParams, best_of_n),
}


def expand_recipe(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """Return the spec with its `recipe` replaced by the stages it expands to."""
    from assay.config import describe_validation_error

    if "recipe" not in raw:
        return raw
    if "stages" in raw:
        raise AssayError(f"{path}: give either `recipe` or `stages`, not both")
    recipe = raw["recipe"]
    if not isinstance(recipe, dict) or set(recipe) - {"name", "params"} or "name" not in recipe:
        raise AssayError(f"{path}: recipe: expected a mapping with `name` and `params`")
    name = recipe["name"]
    if name not in RECIPES:
        raise AssayError(f"{path}: recipe.name: unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    params_model, build = RECIPES[name]
    try:
        params = params_model.model_validate(recipe.get("params") or {})
    except ValidationError as err:
        raise AssayError(describe_validation_error(err, path, prefix="recipe.params")) from err
    expanded = {key: value for key, value in raw.items() if key != "recipe"}
    expanded["stages"] = build(params)
    return expanded
