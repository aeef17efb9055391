"""Errors of the sandbox layer."""

from assay.errors import AssayError


class SandboxError(AssayError):
    """The sandbox cannot be set up or used: no engine, no image, a bad request or config.

    A user error: the CLI prints it in one line and exits 2. A program that fails inside the
    sandbox is never this error; it is a result.
    """
