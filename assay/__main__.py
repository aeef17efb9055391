"""`python -m assay` runs the `assay` command (for scripts that hold a Python, not a PATH)."""

from assay.cli.main import main

main()
