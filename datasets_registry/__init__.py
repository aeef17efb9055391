"""Named, versioned Lance datasets with kinds and lineage."""

from datasets_registry.catalog import VersionInfo
from datasets_registry.errors import RegistryError
from datasets_registry.lineage import Lineage, canonical_hash, content_id
from datasets_registry.registry import DatasetVersion, Registry

__all__ = [
    "DatasetVersion",
    "Lineage",
    "Registry",
    "RegistryError",
    "VersionInfo",
    "canonical_hash",
    "content_id",
]
