"""Source scanning shared by the runners of C-like languages (C++, Java, Go, Rust, JavaScript,
TypeScript): masking comments and string literals, finding assertion lines, renaming `main`.

A compiled test snippet is judged per line: every line of the tests holding an assertion is one
test (named `line N: <the line>`), found here on the host before anything runs; the harness
reports each assertion's line as it runs, and a line passes when all its assertions passed.
"""

from __future__ import annotations

import re

from sandbox.languages.base import InvalidInput


def mask(source: str, *, single_quote_strings: bool = True, backtick_strings: bool = False) -> str:
    """`source` with comments and string/char literals replaced by spaces (newlines kept), so a
    search finds only code, at the same offsets."""
    out = list(source)
    i, n = 0, len(source)
    quotes = '"' + ("'" if single_quote_strings else "") + ("`" if backtick_strings else "")

    def blank(start: int, end: int) -> None:
        for k in range(start, min(end, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            end = n if end < 0 else end + 2
            blank(i, end)
            i = end
        elif c in quotes:
            k = i + 1
            while k < n and source[k] != c:
                k += 2 if source[k] == "\\" and c != "`" else 1
            blank(i + 1, k)
            i = k + 1
        else:
            i += 1
    return "".join(out)


def assertion_lines(tests: str, pattern: str, **mask_options: bool) -> list[int]:
    """Line numbers (1-based) of `tests` where `pattern` matches in code (not comments/strings)."""
    masked = mask(tests, **mask_options)
    lines = sorted({masked.count("\n", 0, m.start()) + 1 for m in re.finditer(pattern, masked)})
    if not lines:
        raise InvalidInput(f"no assertions found in the tests (expected {pattern!r} calls)")
    return lines


def line_names(tests: str, lines: list[int]) -> tuple[str, ...]:
    """Test names for assertion lines: `line N: <code of that line>`."""
    text = tests.split("\n")
    names = []
    for line in lines:
        code = " ".join(text[line - 1].split())
        names.append(f"line {line}: {code if len(code) <= 100 else code[:97] + '...'}")
    return tuple(names)


def rename_function(source: str, pattern: str, replacement: str, **mask_options: bool) -> str:
    """Replace the first code match of `pattern` (e.g. a `main` definition) with `replacement`."""
    match = re.search(pattern, mask(source, **mask_options))
    if match is None:
        return source
    return source[: match.start()] + replacement + source[match.end() :]


def find_statement_end(masked: str, start: int) -> int:
    """Index of the `;` that ends the statement starting at `start` (depth 0), or -1."""
    depth = 0
    for k in range(start, len(masked)):
        c = masked[k]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return -1
        elif c == ";" and depth == 0:
            return k
    return -1


def split_message(masked: str, start: int, end: int) -> int:
    """Offset of the `:` separating a Java assert's condition from its message, or -1."""
    depth, ternary = 0, 0
    for k in range(start, end):
        c = masked[k]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c == "?":
            ternary += 1
        elif depth == 0 and c == ":" and masked[k - 1] != ":" and (k + 1 >= end or masked[k + 1] != ":"):
            if ternary:
                ternary -= 1
            else:
                return k
    return -1


def append_to_body(source: str, signature: str, statement: str, **mask_options: bool) -> str:
    """Insert `statement` before the closing brace of the first function matching `signature`
    (a regex ending at or before its opening brace); unchanged if not found."""
    masked = mask(source, **mask_options)
    match = re.search(signature, masked)
    if match is None:
        return source
    start = masked.find("{", match.end() - 1)
    depth = 0
    for k in range(start, len(masked)):
        if masked[k] == "{":
            depth += 1
        elif masked[k] == "}":
            depth -= 1
            if depth == 0:
                return source[:k] + statement + source[k:]
    return source
