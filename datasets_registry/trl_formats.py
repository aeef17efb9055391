"""TRL's dataset types and formats, converted to the registry's kinds and back.

TRL (its "Dataset formats and types" guide) names six types, each in a *standard* format (plain
strings) or a *conversational* one (lists of {role, content} messages):

| TRL type | columns | kind here | canonical columns |
|---|---|---|---|
| language modelling | `text` / `messages` | `text` / `sft` | `text` / `messages` |
| prompt-only | `prompt` | `prompts` | `prompt` (messages) |
| prompt-completion | `prompt`, `completion` | `sft` | `messages` = prompt + completion |
| preference | `prompt`, `chosen`, `rejected` | `preference` | the same, as messages |
| implicit-prompt preference | `chosen`, `rejected` | `preference` | the shared start becomes `prompt` |
| unpaired preference | `prompt`, `completion`, `label` | `unpaired_preference` | the same, as messages |
| stepwise supervision | `prompt`, `completions`, `labels` | `stepwise` | `prompt` as messages |

A standard string becomes one message: a prompt a `user` turn, a completion an `assistant` turn,
so `to_trl` can give the exact strings back. Columns outside the format (`id`, `source`, ...)
are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from datasets_registry.errors import RegistryError
from datasets_registry.kinds import MESSAGES_TYPE

TrlType = Literal[
    "language_modeling",
    "prompt_only",
    "prompt_completion",
    "preference",
    "implicit_preference",
    "unpaired_preference",
    "stepwise_supervision",
]
Style = Literal["standard", "conversational"]

# Each TRL type: its columns, and the kind it becomes.
TRL_COLUMNS: dict[str, tuple[str, ...]] = {
    "stepwise_supervision": ("prompt", "completions", "labels"),
    "unpaired_preference": ("prompt", "completion", "label"),
    "preference": ("prompt", "chosen", "rejected"),
    "implicit_preference": ("chosen", "rejected"),
    "prompt_completion": ("prompt", "completion"),
    "language_modeling": ("messages",),  # the conversational column; `text` when standard
    "prompt_only": ("prompt",),
}
TRL_KINDS: dict[tuple[str, str], str] = {
    ("language_modeling", "standard"): "text",
    ("language_modeling", "conversational"): "sft",
    ("prompt_only", "standard"): "prompts",
    ("prompt_only", "conversational"): "prompts",
    ("prompt_completion", "standard"): "sft",
    ("prompt_completion", "conversational"): "sft",
    ("preference", "standard"): "preference",
    ("preference", "conversational"): "preference",
    ("implicit_preference", "standard"): "preference",
    ("implicit_preference", "conversational"): "preference",
    ("unpaired_preference", "standard"): "unpaired_preference",
    ("unpaired_preference", "conversational"): "unpaired_preference",
    ("stepwise_supervision", "standard"): "stepwise",
}
# Columns whose values are text (standard) or messages (conversational), per type.
_TURN_COLUMNS: dict[str, tuple[str, ...]] = {
    "language_modeling": ("messages",),
    "prompt_only": ("prompt",),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "implicit_preference": ("chosen", "rejected"),
    "unpaired_preference": ("prompt", "completion"),
    "stepwise_supervision": ("prompt",),
}
# Columns the registry keeps in a native kind that is not a TRL type: such data converts nothing.
_NATIVE_MARKERS = ("stage", "tests", "solution")


@dataclass(frozen=True)
class TrlFormat:
    """A TRL dataset type in one format, e.g. `preference` in `standard` strings."""

    type: TrlType
    style: Style

    @property
    def kind(self) -> str:
        """The registry kind this format is stored as."""
        return TRL_KINDS[(self.type, self.style)]

    def __str__(self) -> str:
        return f"{self.type}/{self.style}"

    @classmethod
    def parse(cls, text: str) -> TrlFormat:
        """`TYPE/STYLE`, e.g. `preference/standard`.

        Raises:
            RegistryError: an unknown type or style, or a pair TRL does not define.
        """
        type_, _, style = text.partition("/")
        if (type_, style) not in TRL_KINDS:
            known = ", ".join(f"{t}/{s}" for t, s in TRL_KINDS)
            raise RegistryError(f"unknown TRL format {text!r}; formats: {known}")
        return cls(type_, style)  # type: ignore[arg-type]


def _is_messages(data_type: pa.DataType) -> bool:
    value = getattr(data_type, "value_type", None)
    return (pa.types.is_list(data_type) or pa.types.is_large_list(data_type)) and pa.types.is_struct(value)


def detect(schema: pa.Schema) -> TrlFormat | None:
    """The TRL format a table's columns hold, or None (a native kind such as `code`, or no match)."""
    names = set(schema.names)
    if names & set(_NATIVE_MARKERS):
        return None
    if "text" in names and "messages" not in names and not names & {"prompt", "chosen"}:
        return TrlFormat("language_modeling", "standard")
    for trl_type, columns in TRL_COLUMNS.items():
        if set(columns) <= names:  # the first match is the most specific type
            turn = _TURN_COLUMNS[trl_type][0]
            style: Style = "conversational" if _is_messages(schema.field(turn).type) else "standard"
            return TrlFormat(trl_type, style) if (trl_type, style) in TRL_KINDS else None  # type: ignore[arg-type]
    return None


def _turn(role: str, text: Any, column: str, row: int) -> list[dict[str, str]]:
    if not isinstance(text, str):
        raise RegistryError(f"row {row}, column {column!r}: expected a string, got {type(text).__name__}")
    return [{"role": role, "content": text}]


def _shared_prompt(chosen: Any, rejected: Any, row: int) -> tuple[Any, Any, Any]:
    """Split an implicit-prompt pair into (prompt, chosen, rejected) at their shared start."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        size = 0
        while size < min(len(chosen), len(rejected)) and chosen[size] == rejected[size]:
            size += 1
        if size == 0:
            raise RegistryError(
                f"row {row}: implicit-prompt preference whose chosen and rejected share no prompt"
            )
        return chosen[:size], chosen[size:], rejected[size:]
    size = 0
    while size < min(len(chosen), len(rejected)) - 1 and chosen[size] == rejected[size]:
        size += 1
    if size == 0:
        raise RegistryError(
            f"row {row}: implicit-prompt preference whose conversations share no prompt turns"
        )
    return chosen[:size], chosen[size:], rejected[size:]


def to_canonical(table: pa.Table, fmt: TrlFormat) -> pa.Table:
    """Rows of `fmt` in the canonical columns of `fmt.kind` (other columns kept).

    Raises:
        RegistryError: a row whose value does not fit the format, naming the row and column.
    """
    if fmt.kind == "text":
        return table
    rows = table.to_pylist()
    standard = fmt.style == "standard"
    out: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        row = dict(row)
        if fmt.type == "implicit_preference":
            row["prompt"], row["chosen"], row["rejected"] = _shared_prompt(
                row["chosen"], row["rejected"], index
            )
        if standard:
            for column in _TURN_COLUMNS[fmt.type] + (
                ("prompt",) if fmt.type == "implicit_preference" else ()
            ):
                role = "user" if column == "prompt" else "assistant"
                row[column] = _turn(role, row[column], column, index)
        if fmt.type == "prompt_completion":
            row["messages"] = row.pop("prompt") + row.pop("completion")
        out.append(row)
    return pa.Table.from_pylist(out, schema=_canonical_schema(table.schema, fmt))


def _canonical_schema(schema: pa.Schema, fmt: TrlFormat) -> pa.Schema:
    """The input's schema with the format's turn columns as messages: standard strings become
    `MESSAGES_TYPE`, conversational columns keep their own message type."""
    turn_type = (
        schema.field(_TURN_COLUMNS[fmt.type][0]).type if fmt.style == "conversational" else MESSAGES_TYPE
    )
    if fmt.type == "prompt_completion":
        kept = [field for field in schema if field.name not in ("prompt", "completion")]
        return pa.schema([pa.field("messages", turn_type), *kept])
    converted = set(_TURN_COLUMNS[fmt.type])
    fields = [pa.field(f.name, turn_type) if f.name in converted else f for f in schema]
    if fmt.type == "implicit_preference":
        fields.insert(0, pa.field("prompt", turn_type))
    return pa.schema(fields)


def _text_of(messages: list[dict[str, str]], column: str, row: int) -> str:
    if len(messages) != 1:
        raise RegistryError(
            f"row {row}, column {column!r}: {len(messages)} turns cannot be written as one standard string"
        )
    return messages[0]["content"]


# Columns a TRL format is made of; any other column (`source`, `language`, scores) is extra.
FORMAT_COLUMNS = frozenset({"text", "messages", "prompt", "completion", "chosen", "rejected", "label"}) | {
    "completions",
    "labels",
}


def to_trl(table: pa.Table, fmt: TrlFormat) -> pa.Table:
    """Canonical rows of `fmt.kind` written back in `fmt`: the format's columns, then the extra
    columns the rows carry, except the registry's content-derived `id` (an import makes it anew).

    Raises:
        RegistryError: a row cannot be written in `fmt` (e.g. a multi-turn prompt as one string).
    """
    extra = [name for name in table.column_names if name not in FORMAT_COLUMNS and name != "id"]
    if fmt.kind == "text":
        return table.select(["text", *extra])
    standard = fmt.style == "standard"
    out: list[dict[str, Any]] = []
    for index, row in enumerate(
        table.select([n for n in table.column_names if n in FORMAT_COLUMNS]).to_pylist()
    ):
        if fmt.type == "prompt_completion":
            messages = row["messages"]
            row = {"prompt": messages[:-1], "completion": messages[-1:]}
        elif fmt.type == "language_modeling":
            row = {"messages": row["messages"]}
        else:
            row = {column: row[column] for column in TRL_COLUMNS[fmt.type] + ("prompt",) if column in row}
        if fmt.type == "implicit_preference":
            prompt = row.pop("prompt")
            if standard:
                prefix = _text_of(prompt, "prompt", index)
                row = {
                    "chosen": prefix + _text_of(row["chosen"], "chosen", index),
                    "rejected": prefix + _text_of(row["rejected"], "rejected", index),
                }
            else:
                row = {"chosen": prompt + row["chosen"], "rejected": prompt + row["rejected"]}
        elif standard:
            for column in _TURN_COLUMNS[fmt.type]:
                row[column] = _text_of(row[column], column, index)
        out.append(row)
    columns = TRL_COLUMNS[fmt.type]
    converted = pa.Table.from_pylist(out).select(list(columns))
    for name in extra:
        converted = converted.append_column(table.schema.field(name), table[name])
    return converted
