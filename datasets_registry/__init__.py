"""Named, versioned Lance datasets with kinds, tags and lineage.

The public names load on first use, so light users (a name check, the CLI's `--help`) do not
pay for importing Lance and Arrow.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets_registry.catalog import VersionInfo
    from datasets_registry.errors import RegistryError
    from datasets_registry.lineage import Lineage, canonical_hash, content_id
    from datasets_registry.registry import DatasetVersion, Registry

_HOMES = {
    "DatasetVersion": "registry",
    "Registry": "registry",
    "VersionInfo": "catalog",
    "RegistryError": "errors",
    "Lineage": "lineage",
    "canonical_hash": "lineage",
    "content_id": "lineage",
}

__all__ = [
    "DatasetVersion",
    "Lineage",
    "Registry",
    "RegistryError",
    "VersionInfo",
    "canonical_hash",
    "content_id",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'datasets_registry' has no attribute {name!r}")
    return getattr(import_module(f"datasets_registry.{_HOMES[name]}"), name)
