"""The catalog: one Lance table under the registry root with a row per registered version.

A dataset version exists for readers only once its catalog row is committed, so a writer that
dies between writing the data and committing the row leaves nothing visible.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import lance
import pyarrow as pa

from datasets_registry.job_commits import JobCommits
from datasets_registry.lineage import Lineage
from datasets_registry.storage import create_empty, open_dataset

CATALOG_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("version", pa.int64()),
        ("kind", pa.string()),
        ("num_rows", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("job_id", pa.string()),
        ("lineage", pa.string()),
    ]
)


@dataclass(frozen=True)
class VersionInfo:
    """A registered dataset version as the catalog records it."""

    name: str
    version: int
    kind: str
    num_rows: int
    created_at: datetime
    job_id: str | None
    lineage: Lineage


class Catalog:
    """Append-only Lance table of registered versions."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        # Versions of a job whose commit record is missing stay hidden (see job_commits).
        self.jobs = JobCommits(uri.rsplit("/", 1)[0] + "/jobs.lance")

    def _dataset(self) -> lance.LanceDataset | None:
        return open_dataset(self.uri)

    def append(self, name: str, version: int, kind: str, num_rows: int, lineage: Lineage) -> None:
        """Commit one catalog row (a Lance append: concurrent appends do not conflict)."""
        row = {
            "name": name,
            "version": version,
            "kind": kind,
            "num_rows": num_rows,
            "created_at": datetime.now(UTC),
            "job_id": lineage.job_id,
            "lineage": lineage.model_dump_json(),
        }
        table = pa.Table.from_pylist([row], schema=CATALOG_SCHEMA)
        if self._dataset() is None:
            create_empty(self.uri, CATALOG_SCHEMA)  # racing creators must not undo an append
        lance.write_dataset(table, self.uri, mode="append")

    def delete(self, infos: list[VersionInfo]) -> None:
        """Remove the catalog rows of these versions, in one commit."""
        dataset = self._dataset()
        if dataset is None or not infos:
            return
        predicate = " OR ".join(f"(name = '{i.name}' AND version = {i.version})" for i in infos)
        dataset.delete(predicate)

    def rows(self, name: str | None = None, *, include_hidden: bool = False) -> list[VersionInfo]:
        """All registered versions, optionally of one name, ordered by name then version.

        Versions of a job that has not committed (in flight, killed, or aborted) are left out
        unless `include_hidden`.
        """
        dataset = self._dataset()
        if dataset is None:
            return []
        filter_ = None if name is None else f"name = '{name}'"
        table = dataset.to_table(filter=filter_)
        infos = [
            VersionInfo(
                name=r["name"],
                version=r["version"],
                kind=r["kind"],
                num_rows=r["num_rows"],
                created_at=r["created_at"],
                job_id=r["job_id"],
                lineage=Lineage.model_validate(json.loads(r["lineage"])),
            )
            for r in table.to_pylist()
        ]
        if not include_hidden and any(info.job_id for info in infos):
            hidden = self.jobs.hidden()
            infos = [info for info in infos if info.job_id not in hidden]
        return sorted(infos, key=lambda info: (info.name, info.version))
