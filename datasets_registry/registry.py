"""Named, versioned Lance datasets with kinds, tags and lineage.

Layout under the root (a local path or an object-store URI):
`datasets/NAME.lance` holds the data, one Lance version per registry version, with Lance tags;
`_catalog/versions.lance` records each registered version with its kind and lineage. A version
is visible only once its catalog row is committed. Nothing is created until the first write.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import lance
import pyarrow as pa

from assay.names import NAME_PATTERN
from datasets_registry import digest_files, job_commits, storage
from datasets_registry.catalog import Catalog, VersionInfo
from datasets_registry.errors import RegistryError
from datasets_registry.lineage import Lineage
from datasets_registry.refs import check_name, parse_ref
from datasets_registry.validation import validate_rows

if TYPE_CHECKING:
    import polars as pl
    import ray.data

    from datasets_registry.diff import DatasetDiff
    from datasets_registry.stats import DatasetStats

WriteMode = Literal["overwrite", "append"]

# How long a Lance version that no catalog row names yet counts as a write in flight: gc leaves
# it alone, and an append builds on it. Older, it is an orphan of a writer that died.
UNREGISTERED_GRACE = timedelta(hours=1)


def _aware(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one is local time, as Lance's `versions()` timestamps are."""
    return moment if moment.tzinfo else moment.astimezone(UTC)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _cannot_read(filter: str | None) -> str:
    return "cannot read" if filter is None else f"cannot read with filter {filter!r}"


# Lance appends where in its Rust source an error arose (", /home/.../scanner.rs:839:33"): noise
# to a user, who needs only what was wrong with the filter.
_RUST_LOCATION = re.compile(r",?\s*/\S+\.rs:\d+:\d+")
_LANCE_INTERNAL_FIELDS = re.compile(r", _row\w+")


def _lance_reason(err: Exception) -> str:
    """Lance's message without its internal source paths and hidden row-address fields."""
    text = _RUST_LOCATION.sub("", str(err)).replace("Invalid user input: ", "").strip()
    return _LANCE_INTERNAL_FIELDS.sub("", text).rstrip(".,") or type(err).__name__


@dataclass(frozen=True)
class DatasetVersion:
    """One registered version of a dataset: the data and its catalog record."""

    uri: str
    info: VersionInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def ref(self) -> str:
        """The exact reference `name@version`."""
        return f"{self.info.name}@{self.info.version}"

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def num_rows(self) -> int:
        return self.info.num_rows

    def to_lance(self) -> lance.LanceDataset:
        """The Lance dataset checked out at this version."""
        return lance.dataset(self.uri, version=self.info.version)

    @property
    def schema(self) -> pa.Schema:
        return self.to_lance().schema

    def to_arrow(
        self, columns: list[str] | None = None, filter: str | None = None, limit: int | None = None
    ) -> pa.Table:
        """Read this version as an Arrow table, with column projection and filter pushdown.

        `filter` is a SQL predicate, e.g. `"language = 'fr' AND n > 3"`.
        """
        try:
            return self.to_lance().to_table(columns=columns, filter=filter, limit=limit)
        except (ValueError, OSError) as err:
            raise RegistryError(f"{self.ref}: {_cannot_read(filter)}: {_lance_reason(err)}") from err

    def head(self, n: int = 5) -> pa.Table:
        """The first `n` rows."""
        return self.to_arrow(limit=n)

    def sample(self, n: int = 10, where: str | None = None, seed: int = 0) -> pa.Table:
        """`n` rows drawn at random (reproducibly, by `seed`) among those matching `where`.

        Only the offsets of the matching rows are read, then the drawn rows are taken by offset,
        so a sample of a large version costs little more than its `n` rows. Rows come in
        dataset order.
        """
        import numpy as np

        if n < 1:
            raise RegistryError(f"{self.ref}: cannot sample {n} rows; ask for at least 1")
        dataset = self.to_lance()
        try:
            if where is None:
                offsets = None
                total = dataset.count_rows()
            else:
                offsets = dataset.to_table(columns=["_rowoffset"], filter=where)["_rowoffset"].to_numpy()
                total = len(offsets)
        except (ValueError, OSError) as err:
            raise RegistryError(f"{self.ref}: {_cannot_read(where)}: {_lance_reason(err)}") from err
        picks = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
        rows = picks if offsets is None else offsets[picks]
        return dataset.take([int(row) for row in rows])

    def to_polars(self, columns: list[str] | None = None) -> pl.DataFrame:
        """Read this version as a polars DataFrame."""
        import polars as pl

        frame = pl.from_arrow(self.to_arrow(columns=columns))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def to_ray(self) -> ray.data.Dataset:
        """Read this version as a Ray Dataset, one read task per Lance fragment."""
        import lance_ray

        return lance_ray.read_lance(self.uri, dataset_options={"version": self.info.version})

    def size_bytes(self) -> int:
        """Bytes of the data files this version reads."""
        return sum(
            data_file.file_size_bytes or 0
            for fragment in self.to_lance().get_fragments()
            for data_file in fragment.metadata.files
        )

    def stats(self) -> DatasetStats:
        """Column, language, score and length statistics (see `datasets_registry.stats`)."""
        from datasets_registry.stats import compute_stats

        return compute_stats(self)

    def diff(self, other: DatasetVersion) -> DatasetDiff:
        """Rows added, removed and changed from this version to `other`, by `id`."""
        from datasets_registry.diff import diff_versions

        return diff_versions(self, other)


class Registry:
    """Named, versioned Lance datasets with kinds, tags and lineage.

    Example:
        >>> registry = Registry("/tmp/reg")
        >>> version = registry.write("demo", pa.table({"x": [1, 2]}))
        >>> registry.open("demo@latest").to_arrow().num_rows
        2
    """

    def __init__(self, root: str | os.PathLike[str], *, write_digests: bool = True) -> None:
        """Args:
        root: A local folder or an object-store URI.
        write_digests: Store the digests of each version's new fragments beside the data
            when it is written (`digest_files`), so a diff of it need not read its content.
        """
        self.root = os.fspath(root)
        self.write_digests = write_digests
        if "://" not in self.root:
            # Absolute, because Ray workers that read and write it run in other folders. No
            # folder is made here: reading a mistyped root must change nothing, and Lance
            # creates the folders it writes.
            self.root = os.path.abspath(self.root)
        self.catalog = Catalog(_join(self.root, "_catalog", "versions.lance"))

    def dataset_uri(self, name: str) -> str:
        """Where the Lance data of `name` lives."""
        return _join(self.root, "datasets", f"{check_name(name)}.lance")

    def names(self) -> list[str]:
        """All dataset names with at least one registered version."""
        return sorted({info.name for info in self.catalog.rows()})

    def versions(self, name: str) -> list[VersionInfo]:
        """Registered versions of `name`, oldest first."""
        infos = self.catalog.rows(check_name(name))
        if not infos:
            known = ", ".join(self.names()) or "none yet"
            raise RegistryError(f"no dataset named {name!r} in registry {self.root}; datasets: {known}")
        return infos

    def tags(self, name: str) -> dict[str, int]:
        """Tags of `name` and the versions they point to."""
        self.versions(name)
        tags = lance.dataset(self.dataset_uri(name)).tags.list()
        return {tag: int(meta["version"]) for tag, meta in sorted(tags.items())}

    def open(self, ref: str) -> DatasetVersion:
        """Open `name`, `name@latest`, `name@VERSION` or `name@TAG`."""
        parsed = parse_ref(ref)
        infos = self.versions(parsed.name)
        selector = parsed.selector
        if isinstance(selector, str):
            tags = self.tags(parsed.name)
            if selector not in tags:
                known = ", ".join(tags) or "none"
                raise RegistryError(f"dataset {parsed.name!r} has no tag {selector!r}; tags: {known}")
            selector = tags[selector]
        if selector is None:
            return DatasetVersion(self.dataset_uri(parsed.name), infos[-1])
        for info in infos:
            if info.version == selector:
                return DatasetVersion(self.dataset_uri(parsed.name), info)
        known = ", ".join(str(info.version) for info in infos)
        raise RegistryError(f"dataset {parsed.name!r} has no version {selector}; versions: {known}")

    def tag(self, ref: str, tag: str, *, move: bool = False) -> DatasetVersion:
        """Point `tag` at the version `ref` names; an existing tag moves only with `move`."""
        if not NAME_PATTERN.match(tag) or tag.isdigit() or tag == "latest":
            raise RegistryError(f"invalid tag {tag!r}: use a name that is not a number or 'latest'")
        version = self.open(ref)
        tags = version.to_lance().tags
        existing = self.tags(version.name)
        if tag in existing and not move:
            raise RegistryError(
                f"tag {tag!r} already points to {version.name}@{existing[tag]}; move it explicitly"
            )
        if tag in existing:
            tags.update(tag, version.version)
        else:
            tags.create(tag, version.version)
        return version

    def untag(self, name: str, tag: str) -> None:
        """Remove a tag."""
        tags = self.tags(name)
        if tag not in tags:
            raise RegistryError(f"dataset {name!r} has no tag {tag!r}; tags: {', '.join(tags) or 'none'}")
        lance.dataset(self.dataset_uri(name)).tags.delete(tag)

    def write(
        self,
        name: str,
        data: pa.Table | ray.data.Dataset,
        *,
        kind: str = "generic",
        lineage: Lineage | None = None,
        mode: WriteMode = "overwrite",
    ) -> DatasetVersion:
        """Check `data` against its kind, write it as a new version of `name`, register it.

        Args:
            name: Dataset name.
            data: An Arrow table, or a Ray Dataset (written in parallel, block by block).
            kind: Dataset kind; every row must fit it, or nothing is written.
            lineage: Where the data came from.
            mode: "overwrite" makes the new version hold exactly `data`; "append" adds to
                the previous version's rows (the schemas must match).

        An append builds on the latest Lance version. When that version has no catalog row
        and is older than `UNREGISTERED_GRACE`, it is the orphan of a writer that died between
        its commit and its catalog row: the latest registered version is restored first, so
        the orphan's rows do not leak into this one. A younger unregistered version may be a
        writer still in flight, about to register it; the append builds on it (Lance rebases
        concurrent appends), so if that writer dies after all, its rows are in this version.

        Returns:
            The registered version.
        """
        uri = self.dataset_uri(name)
        lineage = lineage or Lineage()
        if isinstance(data, pa.Table):
            data = storage.cast_table(data, storage.normal_schema(data.schema))
            schema = data.schema
        else:
            schema = storage.ray_schema(data, name)
        base = self._orphan_base(name, uri) if mode == "append" else None
        if mode == "append" and storage.exists(uri) and base != storage.NO_ROWS:
            current = lance.dataset(uri, version=base).schema
            if current != schema:
                raise RegistryError(
                    f"cannot append to {name!r}: its schema is\n{current}\nbut the new rows have\n{schema}"
                )
        if isinstance(data, pa.Table):
            validate_rows(kind, data, dataset=name)
        if base is not None:
            # Before the fragments, which Lance writes against the latest schema. Checked again
            # just before the restore: an append committed between the check and the restore
            # would drop out of the latest version, so that window is kept short.
            base = self._orphan_base(name, uri)
            if base is not None:
                storage.restore(uri, base, schema)
        if isinstance(data, pa.Table):
            fragments = storage.write_table_fragments(data, uri, mode)
        else:
            schema, fragments = storage.write_ray_fragments(data, uri, kind, name, mode)
        version = storage.commit(uri, schema, fragments, mode)
        committed = lance.dataset(uri, version=version)
        self.catalog.append(name, version, kind, committed.count_rows(), lineage)
        if self.write_digests:  # never fails the write: a digest not stored is computed later
            digest_files.store(committed, fragments)
        # Not `open`: the version of a job that has not committed yet is hidden from readers.
        (info,) = [i for i in self.catalog.rows(name, include_hidden=True) if i.version == version]
        return DatasetVersion(uri, info)

    def begin_job(self, job_id: str) -> None:
        """Open a job's outputs: versions written with `lineage.job_id == job_id` stay hidden
        until `commit_job`. A job run again under its id first aborts its earlier attempt."""
        if any(info.job_id == job_id for info in self.catalog.rows(include_hidden=True)):
            self.abort_job(job_id)
        self.catalog.jobs.record(job_id, job_commits.OPEN)

    def commit_job(self, job_id: str) -> None:
        """Make every version the job wrote visible at once (one append: atomic)."""
        self.catalog.jobs.record(job_id, job_commits.COMMITTED)

    def abort_job(self, job_id: str) -> list[VersionInfo]:
        """Unregister the versions of a job that never committed; returns them.

        Where such a version is the latest Lance version of its dataset, the latest registered
        version is restored on top, so a later append does not build on the aborted rows.
        """
        infos = [info for info in self.catalog.rows(include_hidden=True) if info.job_id == job_id]
        self.catalog.jobs.record(job_id, job_commits.ABORTED)
        self.catalog.delete(infos)
        for name in sorted({info.name for info in infos}):
            uri = self.dataset_uri(name)
            dataset = lance.dataset(uri)
            if dataset.version in {info.version for info in infos if info.name == name}:
                registered = [info.version for info in self.catalog.rows(name)]
                storage.restore(uri, registered[-1] if registered else storage.NO_ROWS, dataset.schema)
        return infos

    def abort_stale_jobs(self) -> list[str]:
        """Abort jobs whose outputs opened longer than `UNREGISTERED_GRACE` ago and never
        committed: their writer died. Returns their ids."""
        stale = datetime.now(UTC) - UNREGISTERED_GRACE
        dead = [
            job_id
            for job_id, (state, at) in self.catalog.jobs.latest().items()
            if state == job_commits.OPEN and _aware(at) < stale
        ]
        for job_id in dead:
            self.abort_job(job_id)
        return dead

    def _orphan_base(self, name: str, uri: str) -> int | None:
        """The version an append must build on instead of an orphaned latest Lance version.

        Returns:
            None when the latest Lance version is registered or in flight (younger than
            `UNREGISTERED_GRACE`); else the latest registered version, or `storage.NO_ROWS`
            when none is registered.
        """
        if not storage.exists(uri):
            return None
        dataset = lance.dataset(uri)
        registered = [info.version for info in self.catalog.rows(name)]
        if dataset.version in registered:
            return None
        created = next(v["timestamp"] for v in dataset.versions() if v["version"] == dataset.version)
        if _aware(created) >= datetime.now(UTC) - UNREGISTERED_GRACE:
            return None
        return registered[-1] if registered else storage.NO_ROWS

    def diff(self, old: str, new: str) -> DatasetDiff:
        """Diff two references (two versions of one dataset, or two datasets)."""
        return self.open(old).diff(self.open(new))

    def references(self) -> set[str]:
        """Every `name@version` that the lineage of a registered version points to."""
        return {
            source
            for info in self.catalog.rows()
            for source in info.lineage.sources
            if not source.startswith("file:")
        }

    def removable_versions(self, extra_references: set[str] | None = None) -> list[VersionInfo]:
        """Versions that `gc` may remove: not the latest, not tagged, not referenced by lineage.

        Args:
            extra_references: Further `name@version` refs to keep (e.g. from model lineage).
        """
        keep = self.references() | (extra_references or set())
        removable = []
        for name in self.names():
            infos = self.versions(name)
            tagged = set(self.tags(name).values())
            removable += [
                info
                for info in infos[:-1]
                if info.version not in tagged and f"{name}@{info.version}" not in keep
            ]
        return removable

    def gc(self, extra_references: set[str] | None = None, *, dry_run: bool = False) -> list[VersionInfo]:
        """Remove old versions nobody points to; see `removable_versions`.

        Also removes Lance versions that were never registered (a writer that died before its
        catalog row), and those of a job that opened its outputs longer than the grace ago and
        never committed them (see `job_commits`). Tagged versions are skipped by Lance itself,
        never untagged.

        Returns:
            The registered versions removed (or that would be, with `dry_run`).
        """
        if not dry_run:
            self.abort_stale_jobs()  # a dead job's hidden versions become orphans, removed below
        removable = self.removable_versions(extra_references)
        if dry_run:
            return removable
        removed_versions: dict[str, set[int]] = {}
        for info in removable:
            removed_versions.setdefault(info.name, set()).add(info.version)
        # Unregister first: a crash after this leaves only unregistered versions, which the
        # next gc removes, never a catalog row pointing at deleted data.
        self.catalog.delete(removable)
        recent = datetime.now(UTC) - UNREGISTERED_GRACE
        for name in self.names():
            dataset = lance.dataset(self.dataset_uri(name))
            registered = {info.version for info in self.versions(name)}
            doomed = [
                v["version"]
                for v in dataset.versions()
                if v["version"] not in registered
                and v["version"] != dataset.latest_version
                # A fresh unregistered version may belong to a writer about to register it.
                and (v["version"] in removed_versions.get(name, ()) or _aware(v["timestamp"]) < recent)
            ]
            if doomed:
                dataset.cleanup_old_versions(versions=sorted(doomed), error_if_tagged_old_versions=False)
            digest_files.remove_orphans(self.dataset_uri(name))  # of fragments whose data files went
        return removable
