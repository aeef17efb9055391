"""Job commit records: a job's outputs become visible together, when its record commits.

A job writes several datasets (its outputs and dead letters), each version atomic on its own.
Before the first, it appends an `open` record for its job id; after the last, a `committed`
one. Catalog readers hide every version whose job's latest record is `open` (or `aborted`), so
a job killed between two outputs shows none of them; `gc` removes such versions once they are
older than the grace period, and a job run again under the same id aborts its earlier attempt's
versions first. Versions written outside a job (no record for their job id) are visible at once.

The records are one append-only Lance table, `_catalog/jobs.lance`: appends never conflict, so
many jobs may open and commit at once, on a local disk or an object store.
"""

from __future__ import annotations

from datetime import UTC, datetime

import lance
import pyarrow as pa

from datasets_registry.storage import create_empty, open_dataset

JOB_RECORD_SCHEMA = pa.schema(
    [("job_id", pa.string()), ("state", pa.string()), ("at", pa.timestamp("us", tz="UTC"))]
)
OPEN, COMMITTED, ABORTED = "open", "committed", "aborted"


class JobCommits:
    """The append-only table of job records."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def record(self, job_id: str, state: str) -> None:
        """Append one record (`OPEN`, `COMMITTED` or `ABORTED`) for `job_id`."""
        table = pa.Table.from_pylist(
            [{"job_id": job_id, "state": state, "at": datetime.now(UTC)}], schema=JOB_RECORD_SCHEMA
        )
        if open_dataset(self.uri) is None:
            create_empty(self.uri, JOB_RECORD_SCHEMA)
        lance.write_dataset(table, self.uri, mode="append")

    def latest(self) -> dict[str, tuple[str, datetime]]:
        """Each job's latest record: its state and when it was written."""
        dataset = open_dataset(self.uri)
        if dataset is None:
            return {}
        table = dataset.to_table()
        latest: dict[str, tuple[str, datetime]] = {}
        for job_id, state, at in zip(
            table["job_id"].to_pylist(), table["state"].to_pylist(), table["at"].to_pylist(), strict=True
        ):
            if job_id not in latest or at >= latest[job_id][1]:
                latest[job_id] = (state, at)
        return latest

    def hidden(self) -> set[str]:
        """Job ids whose versions readers must not see: open (in flight or dead) or aborted."""
        return {job_id for job_id, (state, _) in self.latest().items() if state != COMMITTED}
