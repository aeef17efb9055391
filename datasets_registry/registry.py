"""Named, versioned Lance datasets with lineage.

Layout under the root (a local path or an object-store URI):
`datasets/NAME.lance` holds the data, one Lance version per registry version;
`_catalog/versions.lance` records each registered version with its kind and lineage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import lance
import pyarrow as pa

from datasets_registry.catalog import Catalog, VersionInfo
from datasets_registry.errors import RegistryError
from datasets_registry.kinds import check_kind
from datasets_registry.lineage import Lineage
from datasets_registry.refs import check_name, parse_ref

if TYPE_CHECKING:
    import polars as pl
    import ray.data

WriteMode = Literal["overwrite", "append"]


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _is_local(uri: str) -> bool:
    return "://" not in uri


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

    def to_lance(self) -> lance.LanceDataset:
        """The Lance dataset checked out at this version."""
        return lance.dataset(self.uri, version=self.info.version)

    @property
    def schema(self) -> pa.Schema:
        return self.to_lance().schema

    @property
    def num_rows(self) -> int:
        return self.info.num_rows

    def to_arrow(
        self, columns: list[str] | None = None, filter: str | None = None, limit: int | None = None
    ) -> pa.Table:
        """Read this version as an Arrow table, with column projection and filter pushdown."""
        return self.to_lance().to_table(columns=columns, filter=filter, limit=limit)

    def head(self, n: int = 5) -> pa.Table:
        """The first `n` rows."""
        return self.to_arrow(limit=n)

    def to_polars(self, columns: list[str] | None = None) -> pl.DataFrame:
        """Read this version as a polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.to_arrow(columns=columns))

    def to_ray(self) -> ray.data.Dataset:
        """Read this version as a Ray Dataset, one read task per Lance fragment."""
        import lance_ray

        return lance_ray.read_lance(self.uri, dataset_options={"version": self.info.version})


class Registry:
    """Named, versioned Lance datasets with kinds and lineage.

    Example:
        >>> registry = Registry("/tmp/reg")
        >>> version = registry.write("demo", pa.table({"x": [1, 2]}))
        >>> registry.open("demo@latest").to_arrow().num_rows
        2
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        if _is_local(self.root):
            os.makedirs(self.root, exist_ok=True)
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
            raise self._unknown_name(name)
        return infos

    def open(self, ref: str) -> DatasetVersion:
        """Open `name`, `name@latest`, `name@VERSION` or `name@TAG`."""
        parsed = parse_ref(ref)
        infos = self.versions(parsed.name)
        selector = parsed.selector
        if isinstance(selector, str):
            tags = lance.dataset(self.dataset_uri(parsed.name)).tags.list()
            if selector not in tags:
                known = ", ".join(sorted(tags)) or "none"
                raise RegistryError(f"dataset {parsed.name!r} has no tag {selector!r}; tags: {known}")
            selector = int(tags[selector]["version"])
        if selector is None:
            return DatasetVersion(self.dataset_uri(parsed.name), infos[-1])
        for info in infos:
            if info.version == selector:
                return DatasetVersion(self.dataset_uri(parsed.name), info)
        known = ", ".join(str(info.version) for info in infos)
        raise RegistryError(f"dataset {parsed.name!r} has no version {selector}; versions: {known}")

    def write(
        self,
        name: str,
        data: pa.Table | ray.data.Dataset,
        *,
        kind: str = "generic",
        lineage: Lineage | None = None,
        mode: WriteMode = "overwrite",
    ) -> DatasetVersion:
        """Write `data` as a new version of `name` and register it.

        Args:
            name: Dataset name.
            data: An Arrow table, or a Ray Dataset (written in parallel by lance_ray).
            kind: Dataset kind; the data must have the kind's required columns.
            lineage: Where the data came from.
            mode: "overwrite" makes the new version hold exactly `data`; "append" adds to
                the previous version's rows.

        Returns:
            The registered version.
        """
        uri = self.dataset_uri(name)
        lineage = lineage or Lineage()
        schema = data.schema if isinstance(data, pa.Table) else data.schema().base_schema
        check_kind(kind, schema, dataset=name)
        exists = self._exists(uri)
        lance_mode = mode if exists else "create"
        if isinstance(data, pa.Table):
            version = lance.write_dataset(data, uri, mode=lance_mode).version
        else:
            version = self._write_ray(data, uri, lance_mode)
        num_rows = lance.dataset(uri, version=version).count_rows()
        self.catalog.append(name, version, kind, num_rows, lineage)
        return self.open(f"{name}@{version}")

    @staticmethod
    def _write_ray(data: ray.data.Dataset, uri: str, mode: str) -> int:
        import lance_ray

        data = data.materialize()
        if data.count() == 0:
            # lance_ray writes no fragments for an empty dataset; write its schema instead.
            empty = data.schema().base_schema.empty_table()
            return lance.write_dataset(empty, uri, mode=mode).version
        lance_ray.write_lance(data, uri, mode=mode)
        return lance.dataset(uri).version

    @staticmethod
    def _exists(uri: str) -> bool:
        try:
            lance.dataset(uri)
        except (FileNotFoundError, ValueError):
            return False
        return True

    def _unknown_name(self, name: str) -> RegistryError:
        known = ", ".join(self.names()) or "none yet"
        return RegistryError(f"no dataset named {name!r} in registry {self.root}; datasets: {known}")
