"""What every command group shares: the console, the registry and model store in use."""

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class CliState:
    """Options of the top-level command, read by the command groups."""

    registry_root: str | None = None


def open_registry():  # noqa: ANN201 - the import stays lazy so `assay --help` is instant
    """The registry named by --registry, $ASSAY_REGISTRY, or the default under $ASSAY_HOME."""
    from datagen.settings import default_registry_root
    from datasets_registry import Registry

    return Registry(CliState.registry_root or default_registry_root())


def open_model_store():  # noqa: ANN201 - lazy import, as above
    """The model store under $ASSAY_HOME."""
    from datagen.settings import model_store_dir
    from trainer.model_store import ModelStore

    return ModelStore(model_store_dir())
