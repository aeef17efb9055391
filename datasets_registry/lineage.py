"""Lineage: where a dataset version came from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Lineage(BaseModel):
    """What produced a dataset version: the job, its spec, the models and the sources."""

    model_config = ConfigDict(extra="forbid")

    job_id: str | None = Field(None, description="Id of the job that wrote this version.")
    pipeline: str | None = Field(None, description="Name of the pipeline the job ran.")
    spec: dict[str, Any] | None = Field(None, description="The resolved pipeline spec.")
    spec_hash: str | None = Field(None, description="sha256 of the canonical JSON of `spec`.")
    models: list[str] = Field(default_factory=list, description="Model identities used.")
    sources: list[str] = Field(
        default_factory=list,
        description="Inputs: registry refs `name@version`, or `file:PATH#sha256=HEX`.",
    )
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Counts, token usage and timings of the job."
    )
    imported_format: str | None = Field(
        None, description="For imported rows, the format they came in, e.g. `trl:preference/standard`."
    )


def content_id(value: Any) -> str:
    """A row id derived from content: the first 16 hex digits of `canonical_hash`."""
    return canonical_hash(value)[:16]


def canonical_hash(value: Any) -> str:
    """sha256 hex digest of the canonical JSON form of `value` (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class LineageNode:
    """A dataset version and what it was made from, recursively."""

    ref: str
    lineage: Lineage | None  # None when the version is not in the registry (removed or foreign)
    parents: list[LineageNode] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def lineage_graph(ref: str, lookup: Callable[[str], Lineage | None], depth: int = 20) -> LineageNode:
    """Walk sources back from `ref`: registry refs become parents, `file:` sources stay leaves.

    `lookup` returns a version's lineage, or None if it is not registered. Cycles and depth
    beyond `depth` stop the walk.
    """
    seen: set[str] = set()

    def visit(node_ref: str, level: int) -> LineageNode:
        lineage = lookup(node_ref)
        node = LineageNode(node_ref, lineage)
        if lineage is None or node_ref in seen or level >= depth:
            return node
        seen.add(node_ref)
        for source in lineage.sources:
            if source.startswith("file:"):
                node.files.append(source)
            else:
                node.parents.append(visit(source, level + 1))
        return node

    return visit(ref, 0)
