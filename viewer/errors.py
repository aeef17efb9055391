"""The viewer's user-facing error."""

from assay.errors import AssayError


class ViewerError(AssayError):
    """A request the viewer cannot answer as asked: a bad filter, an unknown page, a bad setting."""
