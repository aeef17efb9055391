"""Lineage: where a dataset version came from."""

import hashlib
import json
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


def canonical_hash(value: Any) -> str:
    """sha256 hex digest of the canonical JSON form of `value` (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
