"""User-facing errors: bad input that the CLI reports in one line with exit code 2."""


class AssayError(Exception):
    """Bad input (config, template, model path, dataset reference).

    Raised before any work starts, so nothing is written. The CLI prints the message and exits 2.
    """
