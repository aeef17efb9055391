"""A content-addressed cache of LLM calls, stored as a Lance table under the registry root.

The key of a row's call is the sha256 of the model's identity, the conversation, and the
sampling parameters (n, temperatures, top_p, max_tokens, seed): the same call gets the same
completions back. Workers write each finished batch at once, so a job that dies keeps what it
generated, and a re-run or resumed job takes those completions without calling the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import lance
import pyarrow as pa

from datagen.engines.base import COMPLETIONS_TYPE
from datagen.engines.config import SamplingConfig
from datasets_registry import canonical_hash
from datasets_registry.storage import create_empty

CACHE_SCHEMA = pa.schema([("key", pa.string()), ("completions", COMPLETIONS_TYPE)])


def call_key(model_identity: str, conversation: Sequence[dict[str, str]], sampling: SamplingConfig) -> str:
    """The cache key of generating `sampling.n` completions of `conversation` with a model."""
    return canonical_hash(
        {"model": model_identity, "conversation": list(conversation), "sampling": sampling.model_dump()}
    )


class CompletionCache:
    """Lance-backed map from call keys to completion lists; appends from many workers at once."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def get(self, keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The cached completions of those keys that are present."""
        if not keys:
            return {}
        try:
            dataset = lance.dataset(self.uri)
        except (FileNotFoundError, ValueError):
            return {}
        wanted = ", ".join(json.dumps(k).replace('"', "'") for k in set(keys))  # keys are hex digests
        table = dataset.to_table(filter=f"key IN ({wanted})")
        return dict(zip(table["key"].to_pylist(), table["completions"].to_pylist(), strict=True))

    def put(self, entries: dict[str, list[dict[str, Any]]]) -> None:
        """Store completions by key (an append: concurrent writers do not conflict)."""
        if not entries:
            return
        table = pa.table(
            {"key": list(entries), "completions": pa.array(list(entries.values()), COMPLETIONS_TYPE)},
            schema=CACHE_SCHEMA,
        )
        try:
            lance.dataset(self.uri)
        except (FileNotFoundError, ValueError):
            create_empty(self.uri, CACHE_SCHEMA)  # racing workers must not undo an append
        lance.write_dataset(table, self.uri, mode="append")
