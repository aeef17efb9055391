"""assay's core, below every other package: errors, config reading, settings and names.

`assay.cli` (the `assay` command) is the one part of this package at the top of the import
layers: it may import every package, and nothing imports it. See docs/architecture.md.
"""
