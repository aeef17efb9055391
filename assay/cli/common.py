"""What every command group shares: the console, the registry and model store in use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:  # imported lazily at run time, so `assay --help` stays instant
    from datasets_registry import Registry
    from model_store import ModelStore

console = Console()
err_console = Console(stderr=True)


class CliState:
    """Options of the top-level command, read by the command groups."""

    registry_root: str | None = None


def open_registry() -> Registry:
    """The registry named by --registry, $ASSAY_REGISTRY, or the default under $ASSAY_HOME."""
    from assay.settings import default_registry_root
    from datasets_registry import Registry

    return Registry(CliState.registry_root or default_registry_root())


def open_model_store() -> ModelStore:
    """The model store under $ASSAY_HOME."""
    from assay.settings import model_store_dir
    from model_store import ModelStore

    return ModelStore(model_store_dir())
