"""Language runners and their registry: `get_runner("c++")` -> the C++ runner.

| language | aliases | unit-test format (besides stdio cases) |
|---|---|---|
| python | py, python3 | asserts, `def test_*()`, unittest classes (see `python.py`) |
| cpp | c++, cc, cxx | `int main()` with `assert(...)` calls |
| java | | a class with `public static void main` using `assert` statements |
| go | golang | `func main()` with `assert(cond)` calls |
| rust | rs | `fn main()` with `assert!`, `assert_eq!`, `assert_ne!` |
| javascript | js, node | statements using `assert(...)`, `assert.strictEqual/deepStrictEqual/...` |
| typescript | ts | as JavaScript, type-checked with tsc first |
| cobol | cob, cbl | stdio cases only |
| sql | sqlite | JSON: schema/setup, cases with expected rows |
"""

from __future__ import annotations

from sandbox.languages.base import InvalidInput, Plan, Runner, judge
from sandbox.languages.cobol import CobolRunner
from sandbox.languages.cpp import CppRunner
from sandbox.languages.go import GoRunner
from sandbox.languages.java import JavaRunner
from sandbox.languages.javascript import JavaScriptRunner, TypeScriptRunner
from sandbox.languages.python import PythonRunner
from sandbox.languages.rust import RustRunner
from sandbox.languages.sql import SqlRunner

__all__ = ["InvalidInput", "Plan", "Runner", "get_runner", "judge", "language_names", "register"]

_RUNNERS: dict[str, Runner] = {}
_ALIASES: dict[str, str] = {}


def register(runner: Runner) -> None:
    """Make a runner available under its name and aliases."""
    _RUNNERS[runner.name] = runner
    for alias in (runner.name, *runner.aliases):
        _ALIASES[alias.lower()] = runner.name


def language_names() -> list[str]:
    """The registered languages."""
    return sorted(_RUNNERS)


def get_runner(language: str) -> Runner:
    """The runner for a language name or alias (case-insensitive).

    Raises:
        KeyError: with a message naming the known languages.
    """
    name = _ALIASES.get(str(language or "").strip().lower())
    if name is None:
        raise KeyError(f"unknown language {language!r}; known: {', '.join(language_names())}")
    return _RUNNERS[name]


register(PythonRunner())
register(CppRunner())
register(JavaRunner())
register(GoRunner())
register(RustRunner())
register(JavaScriptRunner())
register(TypeScriptRunner())
register(CobolRunner())
register(SqlRunner())
