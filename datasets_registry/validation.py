"""Row checks per dataset kind, vectorised with Arrow compute.

A write is refused on the first offending row, named by its index and `id`, and its column.
"""

import pyarrow as pa
import pyarrow.compute as pc

from datasets_registry.errors import RegistryError
from datasets_registry.kinds import check_kind

ROLES = pa.array(["system", "user", "assistant", "tool"])


class RowError(ValueError):
    """A row that does not fit its kind: `row` is its index in the table checked."""

    def __init__(self, row: int, column: str, problem: str) -> None:
        super().__init__(problem)
        self.row, self.column, self.problem = row, column, problem


def _first(mask: pa.Array) -> int | None:
    """Index of the first true value of a boolean array (nulls count as false)."""
    indices = pc.indices_nonzero(pc.fill_null(mask, False))
    return indices[0].as_py() if len(indices) else None


def _not_null(array: pa.Array, column: str) -> None:
    row = _first(pc.is_null(array))
    if row is not None:
        raise RowError(row, column, "is null")


def _check_messages(array: pa.Array, column: str, *, last_role: str | None) -> None:
    """A conversation: a non-empty list of {role, content}, roles known, content present."""
    value_type = getattr(array.type, "value_type", None)
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)) or not (
        pa.types.is_struct(value_type)
        and {"role", "content"} <= {value_type.field(i).name for i in range(value_type.num_fields)}
    ):
        raise RowError(0, column, f"has type {array.type}; expected list<struct<role, content>>")
    _not_null(array, column)
    row = _first(pc.equal(pc.list_value_length(array), 0))
    if row is not None:
        raise RowError(row, column, "is an empty conversation")
    flat = pc.list_flatten(array)
    parents = pc.list_parent_indices(array)
    roles, contents = pc.struct_field(flat, "role"), pc.struct_field(flat, "content")
    for bad, problem in (
        (pc.invert(pc.is_in(roles, value_set=ROLES)), f"has a role outside {ROLES.to_pylist()}"),
        (pc.is_null(contents), "has a message without content"),
    ):
        index = _first(bad)
        if index is not None:
            raise RowError(parents[index].as_py(), column, problem)
    if last_role is not None:
        offsets = array.offsets.to_numpy()[1:] - array.offsets[0].as_py()
        last_roles = roles.take(pa.array(offsets - 1))
        row = _first(pc.not_equal(last_roles, last_role))
        if row is not None:
            raise RowError(row, column, f"does not end with an {last_role} turn")


def _check_range(array: pa.Array, column: str, low: float, high: float, *, nullable: bool) -> None:
    if nullable and pa.types.is_null(array.type):
        return  # every value null: Arrow infers the null type
    if not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type)):
        raise RowError(0, column, f"has type {array.type}; expected a number")
    if not nullable:
        _not_null(array, column)
    outside = pc.or_(pc.less(array, low), pc.greater(array, high))
    if pa.types.is_floating(array.type):
        outside = pc.or_(outside, pc.is_nan(array))  # NaN compares false both ways
    row = _first(outside)
    if row is not None:
        raise RowError(row, column, f"is {array[row].as_py()}, outside [{low}, {high}]")


def _check_text(array: pa.Array, column: str, *, nullable: bool = False) -> None:
    if nullable and pa.types.is_null(array.type):
        return  # every value null: Arrow infers the null type
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        raise RowError(0, column, f"has type {array.type}; expected a string")
    if not nullable:
        _not_null(array, column)


def _check_stage(array: pa.Array, column: str) -> None:
    if not pa.types.is_integer(array.type):
        raise RowError(0, column, f"has type {array.type}; expected an integer (1 or 2)")
    _not_null(array, column)
    row = _first(pc.invert(pc.is_in(array, value_set=pa.array([1, 2], array.type))))
    if row is not None:
        raise RowError(row, column, f"is {array[row].as_py()}; expected 1 or 2")


def _check_bool(array: pa.Array, column: str) -> None:
    if not pa.types.is_boolean(array.type):
        raise RowError(0, column, f"has type {array.type}; expected true or false")
    _not_null(array, column)


def _check_steps(completions: pa.Array, labels: pa.Array) -> None:
    """Stepwise supervision: a list of step texts and one boolean label per step."""
    for array, column, check, what in (
        (completions, "completions", pa.types.is_string, "strings"),
        (labels, "labels", pa.types.is_boolean, "booleans"),
    ):
        value_type = getattr(array.type, "value_type", None)
        if not pa.types.is_list(array.type) or value_type is None or not check(value_type):
            raise RowError(0, column, f"has type {array.type}; expected a list of {what}")
        _not_null(array, column)
    row = _first(pc.not_equal(pc.list_value_length(completions), pc.list_value_length(labels)))
    if row is not None:
        raise RowError(row, "labels", "has a different length from completions (one label per step)")


def _check_prompt(array: pa.Array, column: str) -> None:
    """A prompt is text or a conversation."""
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        _check_text(array, column)
    else:
        _check_messages(array, column, last_role=None)


def _check_rows(kind: str, table: pa.Table) -> None:
    column = {name: table[name].combine_chunks() for name in table.column_names}
    if kind == "prompts":
        _check_prompt(column["prompt"], "prompt")
    elif kind == "sft":
        _check_messages(column["messages"], "messages", last_role="assistant")
    elif kind in ("preference", "rm_pairs"):
        _check_messages(column["prompt"], "prompt", last_role=None)
        _check_messages(column["chosen"], "chosen", last_role="assistant")
        _check_messages(column["rejected"], "rejected", last_role="assistant")
    if kind == "rm_pairs":
        _check_range(column["label"], "label", 0.0, 1.0, nullable=False)
        _check_stage(column["stage"], "stage")
    if kind == "text":
        _check_text(column["text"], "text")
    if kind == "unpaired_preference":
        _check_messages(column["prompt"], "prompt", last_role=None)
        _check_messages(column["completion"], "completion", last_role="assistant")
        _check_bool(column["label"], "label")
    if kind == "stepwise":
        _check_messages(column["prompt"], "prompt", last_role=None)
        _check_steps(column["completions"], column["labels"])
    if kind == "documents":
        for name in ("title", "source", "license"):
            _check_text(column[name], name)
        _check_text(column["text"], "text")
        row = _first(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column["text"])), 0))
        if row is not None:
            raise RowError(row, "text", "is an empty document")
    if kind == "code":
        _check_prompt(column["prompt"], "prompt")
        _check_text(column["language"], "language")
        _check_text(column["tests"], "tests")
        _check_text(column["solution"], "solution", nullable=True)
        _check_text(column["verdict"], "verdict", nullable=True)
        _check_range(column["pass_rate"], "pass_rate", 0.0, 1.0, nullable=True)


def validate_rows(kind: str, table: pa.Table, *, dataset: str) -> None:
    """Raise RegistryError naming the first row and column of `table` that does not fit `kind`."""
    check_kind(kind, table.schema, dataset=dataset)
    if table.num_rows == 0:
        return
    try:
        _check_rows(kind, table)
    except RowError as err:
        row_id = ""
        if "id" in table.column_names and err.row < table.num_rows:
            row_id = f" (id {table['id'][err.row].as_py()!r})"
        raise RegistryError(
            f"dataset {dataset!r} of kind {kind!r}: row {err.row}{row_id}, column "
            f"{err.column!r} {err.problem}; nothing was written"
        ) from err
