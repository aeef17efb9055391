"""The one base of every user-facing error: bad input that the CLI reports in one line, exit 2.

Every package's errors subclass `AssayError` (`RegistryError`, `ModelStoreError`, `SandboxError`,
`TrainConfigError`, `MergeError`, `RMConfigError`, ...), so the CLI catches one type. A bug is
never an `AssayError`: it keeps its traceback.
"""


class AssayError(Exception):
    """Bad input (config, template, model path, dataset reference, request).

    Raised before any work starts, so nothing is written. The CLI prints the message and exits 2.
    """
