"""Config reading, one way for every component: pipeline specs, training, merging and
reward-model configs are `StrictModel`s read from YAML, and all name the file, the field and the
problem the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from assay.errors import AssayError


class StrictModel(BaseModel):
    """A config model that rejects unknown keys, so a typo fails instead of being ignored."""

    model_config = ConfigDict(extra="forbid")


def read_yaml_mapping(path: Path, what: str, error: type[Exception] = AssayError) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is an empty mapping).

    Args:
        path: The file.
        what: What the file is, for messages ("pipeline spec", "training config", ...).
        error: The component's error type, raised with a message naming the file.

    Raises:
        error: the file is missing, not UTF-8, malformed, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8: {err.reason}") from err
    except yaml.YAMLError as err:
        raise error(f"{path}: malformed YAML: {err}") from err
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} is a YAML mapping, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], assignments: list[str], error: type[Exception] = AssayError) -> None:
    """Apply `--set KEY=VALUE` assignments in place. KEY is dotted (`stage2.learning_rate`,
    `stages.1.sampling.n`: a number indexes a list); VALUE is parsed as YAML (`1e-5`, `[a, b]`).

    Raises:
        error: an assignment without `=`, or a KEY that does not lead to a mapping or list item.
    """
    for assignment in assignments:
        key, sep, value_text = assignment.partition("=")
        if not sep or not key:
            raise error(f"--set {assignment!r}: expected KEY=VALUE, e.g. stages.1.sampling.n=2")
        parts = key.split(".")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            try:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            except (ValueError, IndexError, AttributeError) as err:
                path = ".".join(parts[: depth + 1])
                raise error(f"--set {assignment!r}: no such field {path!r}") from err
        last = parts[-1]
        value = yaml.safe_load(value_text)
        if isinstance(node, list):
            try:
                node[int(last)] = value
            except (ValueError, IndexError) as err:
                raise error(f"--set {assignment!r}: no such list index {last!r}") from err
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise error(f"--set {assignment!r}: {'.'.join(parts[:-1])!r} is not a mapping")


def describe_validation_error(
    err: ValidationError, path: Path, *, prefix: str = "", separator: str = "\n"
) -> str:
    """Each problem as `FILE: field.path: message`, joined by `separator`.

    Args:
        prefix: Prepended to every field path (a recipe's `recipe.params`).
    """
    lines = []
    for problem in err.errors():
        loc = ".".join(str(part) for part in (prefix, *problem["loc"]) if part != "")
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {loc or '(top level)'}: {message}")
    return separator.join(lines)
