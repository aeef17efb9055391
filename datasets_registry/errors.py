"""Registry errors. Each names what was asked for and lists what exists."""

from assay.errors import AssayError


class RegistryError(AssayError, LookupError):
    """A bad dataset name, version or tag, or data that does not fit its kind."""
