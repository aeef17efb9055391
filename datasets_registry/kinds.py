"""Dataset kinds and the columns each must have (row schemas in DESIGN.md).

Every kind also carries `id`, `language`, `source` and `scores` where the data has them; those
are not required so that imported data can be registered as it is.
"""

from typing import Literal

import pyarrow as pa

from datasets_registry.errors import RegistryError

Kind = Literal[
    "prompts",
    "sft",
    "preference",
    "rm_pairs",
    "code",
    "text",
    "unpaired_preference",
    "stepwise",
    "documents",
    "generic",
]

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "prompts": ("prompt",),
    "sft": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "rm_pairs": ("prompt", "chosen", "rejected", "label", "stage"),
    "code": ("prompt", "language", "tests", "solution", "verdict", "pass_rate"),
    "text": ("text",),  # plain language-modelling text (TRL's standard language modelling)
    "unpaired_preference": ("prompt", "completion", "label"),  # TRL's unpaired preference (KTO)
    "stepwise": ("prompt", "completions", "labels"),  # TRL's stepwise supervision (PRM)
    "documents": ("title", "text", "source", "license"),  # long documents (sources of long-context QA)
    "generic": (),
}

COMMON_COLUMNS: tuple[str, ...] = ("id", "language", "source", "scores")


def check_kind(kind: str, schema: pa.Schema, *, dataset: str) -> None:
    """Raise RegistryError if `schema` lacks a column that `kind` requires."""
    if kind not in REQUIRED_COLUMNS:
        raise RegistryError(f"unknown dataset kind {kind!r}; kinds: {', '.join(REQUIRED_COLUMNS)}")
    missing = [column for column in REQUIRED_COLUMNS[kind] if column not in schema.names]
    if missing:
        raise RegistryError(
            f"dataset {dataset!r} of kind {kind!r} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(schema.names)}"
        )


MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES_TYPE = pa.list_(MESSAGE_TYPE)
"""A chat conversation in TRL's conversational format: a list of {role, content}."""
