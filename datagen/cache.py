"""A content-addressed cache of LLM calls, stored as a Lance table under the registry root.

The key of a row's call is the sha256 of the model's identity, the conversation, and the
sampling parameters (n, temperatures, top_p, max_tokens, seed): the same call gets the same
completions back. Workers write each finished batch at once, so a job that dies keeps what it
generated, and a re-run or resumed job takes those completions without calling the model.

The table is a `LanceKeyValueCache` (datagen/lance_kv.py: BTREE key index, merge_insert puts,
opportunistic compaction) whose value column is the list of completions. The stage-result cache
(datagen/stage_cache.py) is the same table kind beside it, for non-LLM stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pyarrow as pa

from datagen.engines.base import COMPLETIONS_TYPE
from datagen.engines.config import SamplingConfig
from datagen.lance_kv import KEY_INDEX, LanceKeyValueCache, key_value_schema
from datasets_registry import canonical_hash

__all__ = ["CACHE_SCHEMA", "KEY_INDEX", "CompletionCache", "call_key"]

COMPLETIONS_FIELD = pa.field("completions", COMPLETIONS_TYPE)
CACHE_SCHEMA = key_value_schema(COMPLETIONS_FIELD)


def call_key(model_identity: str, conversation: Sequence[dict[str, str]], sampling: SamplingConfig) -> str:
    """The cache key of generating `sampling.n` completions of `conversation` with a model."""
    return canonical_hash(
        {"model": model_identity, "conversation": list(conversation), "sampling": sampling.model_dump()}
    )


class CompletionCache(LanceKeyValueCache):
    """Lance-backed map from call keys to completion lists; many writers at once.

    Args:
        uri: Where the Lance table lives (created by the first put).
        index_lag_rows: Refresh the key index once this many rows are unindexed.
        index_lag_fragments: ... or once this many fragments are (each is opened by a lookup).
        compact_fragments: Compact once the table has this many fragments below Lance's
            target size (one per put until then).
        keep_versions: Versions older than this are removed after a compaction.
    """

    def __init__(
        self,
        uri: str,
        *,
        index_lag_rows: int = 4096,
        index_lag_fragments: int = 8,
        compact_fragments: int = 32,
        keep_versions: timedelta = timedelta(minutes=10),
    ) -> None:
        super().__init__(
            uri,
            COMPLETIONS_FIELD,
            index_lag_rows=index_lag_rows,
            index_lag_fragments=index_lag_fragments,
            compact_fragments=compact_fragments,
            keep_versions=keep_versions,
        )
