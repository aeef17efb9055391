"""Recipes: typed functions that wire the stages of one method from their params.

A spec names one as `recipe: {name: ..., params: {...}}` instead of listing `stages`. Importing
this package registers the built-in recipes (the import list below).
"""

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from assay.config import describe_validation_error
from assay.errors import AssayError
from datagen.recipes import (  # noqa: F401 - each registers its recipe
    arbitrage,
    augment,
    best_of_n,
    code_repair,
    long_context,
    preambles,
    safety,
    translate_code,
    verified_code,
)
from datagen.recipes.registry import register_recipe, registered_recipes

__all__ = ["expand_recipe", "register_recipe", "registered_recipes"]


def expand_recipe(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """Return the spec with its `recipe` replaced by the typed stage specs it expands to.

    Raises:
        AssayError: a malformed `recipe`, an unknown name, or params that do not validate,
            naming the file and field.
    """
    if "recipe" not in raw:
        return raw
    if "stages" in raw:
        raise AssayError(f"{path}: give either `recipe` or `stages`, not both")
    recipe = raw["recipe"]
    if not isinstance(recipe, dict) or set(recipe) - {"name", "params"} or "name" not in recipe:
        raise AssayError(f"{path}: recipe: expected a mapping with `name` and `params`")
    recipes = registered_recipes()
    name = recipe["name"]
    if name not in recipes:
        raise AssayError(f"{path}: recipe.name: unknown recipe {name!r}; recipes: {', '.join(recipes)}")
    try:
        params = recipes[name].params.model_validate(recipe.get("params") or {})
    except ValidationError as err:
        raise AssayError(describe_validation_error(err, path, prefix="recipe.params")) from err
    expanded = {key: value for key, value in raw.items() if key != "recipe"}
    expanded["stages"] = recipes[name].expand(params)
    return expanded
