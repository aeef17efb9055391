"""Static checks for code data (no execution here: whatever runs, runs in the sandbox).

- `mutation`: named AST mutation operators that make mutants of a Python reference solution,
  so a synthetic unit test can be kept only when it catches one.
- `sql`: canonical SQL text with sqlglot, so equivalent queries dedupe.
"""
