"""Reading and validating checker kwargs.

Rows reach the checkers from JSON or Arrow, so the readers accept what those produce (an int
may arrive as an integral float when a column had nulls) and reject anything else with an
`InstructionArgumentError` that names the kwarg. The registry adds the instruction id.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from judges.ifeval.errors import InstructionArgumentError

Kwargs = Mapping[str, Any]
Relation = Callable[[int, int], bool]

_MISSING: Final = object()

# Every relation value found in IFEval and M-IFEval (en/es/fr/ja) data. IFEval's "less than" is
# strict; M-IFEval's Spanish "como máximo" means "at most", so it is <=, not <.
RELATIONS: Final[Mapping[str, Relation]] = MappingProxyType(
    {
        "less than": operator.lt,
        "at least": operator.ge,
        "moins de": operator.lt,
        "au moins": operator.ge,
        "al menos": operator.ge,
        "como máximo": operator.le,
        "未満": operator.lt,
        "以上": operator.ge,
    }
)


def _lookup(kwargs: Kwargs, name: str, default: Any) -> Any:
    value = kwargs.get(name)
    if value is None:
        if default is _MISSING:
            raise InstructionArgumentError(name, "is missing")
        return default
    return value


def get_int(kwargs: Kwargs, name: str, *, minimum: int = 0, default: Any = _MISSING) -> int:
    """Read an integer kwarg.

    Args:
        kwargs: The instruction's kwargs, None values already dropped.
        name: The kwarg to read.
        minimum: Smallest accepted value.
        default: Value used when the kwarg is absent; absent and no default is an error.

    Returns:
        The integer.

    Raises:
        InstructionArgumentError: Missing, not an integer, or below `minimum`.
    """
    value = _lookup(kwargs, name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InstructionArgumentError(name, f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise InstructionArgumentError(name, f"must be >= {minimum}, got {value}")
    return value


def get_str(kwargs: Kwargs, name: str, *, default: Any = _MISSING) -> str:
    """Read a non-blank string kwarg.

    Args:
        kwargs: The instruction's kwargs, None values already dropped.
        name: The kwarg to read.
        default: Value used when the kwarg is absent; absent and no default is an error.

    Returns:
        The string, unchanged.

    Raises:
        InstructionArgumentError: Missing, not a string, or blank.
    """
    value = _lookup(kwargs, name, default)
    if not isinstance(value, str):
        raise InstructionArgumentError(name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InstructionArgumentError(name, "must not be blank")
    return value


def get_str_list(kwargs: Kwargs, name: str) -> list[str]:
    """Read a list-of-strings kwarg (a list, tuple or any non-string iterable).

    Args:
        kwargs: The instruction's kwargs, None values already dropped.
        name: The kwarg to read.

    Returns:
        The strings, blank ones removed.

    Raises:
        InstructionArgumentError: Missing, a bare string, or holding a non-string.
    """
    value = _lookup(kwargs, name, _MISSING)
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InstructionArgumentError(name, f"must be a list of strings, got {type(value).__name__}")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise InstructionArgumentError(name, "must be a list of strings")
    return [item for item in items if item.strip()]


def get_str_map(kwargs: Kwargs, name: str) -> dict[str, str]:
    """Read a string-to-string mapping kwarg.

    An Arrow struct column holds the union of keys across rows, with None where a row lacks a
    key, so None values are dropped. A JSON object string is accepted too.

    Args:
        kwargs: The instruction's kwargs, None values already dropped.
        name: The kwarg to read.

    Returns:
        The mapping without None values.

    Raises:
        InstructionArgumentError: Missing, not a mapping, or holding a non-string.
    """
    value = _lookup(kwargs, name, _MISSING)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InstructionArgumentError(name, "is a string but not a JSON object") from None
    if not isinstance(value, Mapping):
        raise InstructionArgumentError(name, f"must be a mapping, got {type(value).__name__}")
    result = {k: v for k, v in value.items() if v is not None}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in result.items()):
        raise InstructionArgumentError(name, "must map strings to strings")
    return result


def get_relation(kwargs: Kwargs, name: str, *, default: Any = _MISSING) -> Relation:
    """Read a comparison kwarg such as "less than" or "al menos".

    Args:
        kwargs: The instruction's kwargs, None values already dropped.
        name: The kwarg to read.
        default: Relation name used when the kwarg is absent.

    Returns:
        A function `(actual, threshold) -> bool`.

    Raises:
        InstructionArgumentError: Missing, or not one of `RELATIONS`.
    """
    value = get_str(kwargs, name, default=default)
    relation = RELATIONS.get(value.strip().lower())
    if relation is None:
        known = ", ".join(repr(k) for k in RELATIONS)
        raise InstructionArgumentError(name, f"must be one of {known}, got {value!r}")
    return relation
