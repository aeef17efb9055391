"""Source scanning shared by the runners of C-like languages (C++, Java, Go, Rust, JavaScript,
TypeScript): masking comments and string literals, finding assertion lines, renaming `main`.

A compiled test snippet is judged per line: every line of the tests holding an assertion is one
test (named `line N: <the line>`), found here on the host before anything runs; the harness
reports each assertion's line as it runs, and a line passes when all its assertions passed.
"""

from __future__ import annotations

import bisect
import re

from sandbox.languages.base import InvalidInput

# Comments and string literals, leftmost first: `//` to the end of the line, `/* */` (or to the end
# of the source when unclosed), and quoted strings with backslash escapes (backtick strings have
# none), which may span lines and run to the end of the source when unclosed.
_LITERALS = {
    quotes: re.compile(
        r"//[^\n]*|/\*[\s\S]*?(?:\*/|\Z)"
        + "".join(
            f"|{q}[^{q}\\\\]*(?:\\\\[\\s\\S]?[^{q}\\\\]*)*{q}?" if q != "`" else "|`[^`]*`?" for q in quotes
        )
    )
    for quotes in ('"', "\"'", '"`', "\"'`")
}


def _blank(text: str) -> str:
    """`text` with every character but newlines replaced by a space."""
    return "\n".join(" " * len(part) for part in text.split("\n"))


def _masked(match: re.Match) -> str:
    text = match.group()
    if text[0] not in "\"'`":  # a comment: all of it
        return _blank(text)
    closed = len(text) > 1 and text[-1] == text[0] and not _unclosed(text)
    inner = text[1:-1] if closed else text[1:]
    return text[0] + _blank(inner) + (text[0] if closed else "")


def _unclosed(text: str) -> bool:
    """For a quoted match ending with its quote char: whether that last quote is escaped (then
    the literal ran to the end of the source unclosed). Backtick strings have no escapes."""
    if text[0] == "`":
        return False
    backslashes = len(text) - 1 - len(text[:-1].rstrip("\\"))
    return backslashes % 2 == 1


def mask(source: str, *, single_quote_strings: bool = True, backtick_strings: bool = False) -> str:
    """`source` with comments and string/char literals replaced by spaces (newlines kept), so a
    search finds only code, at the same offsets. One regex pass: linear in the source."""
    quotes = '"' + ("'" if single_quote_strings else "") + ("`" if backtick_strings else "")
    return _LITERALS[quotes].sub(_masked, source)


class LineIndex:
    """Line numbers of offsets in a text, from one scan of its newlines (counting newlines from
    the start for every match would cost the text's size per match)."""

    def __init__(self, text: str) -> None:
        self.newlines = [match.start() for match in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        """The 1-based line holding `offset`."""
        return bisect.bisect_left(self.newlines, offset) + 1


def assertion_lines(tests: str, pattern: str, **mask_options: bool) -> list[int]:
    """Line numbers (1-based) of `tests` where `pattern` matches in code (not comments/strings)."""
    masked = mask(tests, **mask_options)
    index = LineIndex(masked)
    lines = sorted({index.line(m.start()) for m in re.finditer(pattern, masked)})
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


_STATEMENT_CHARS = re.compile(r"[()\[\]{};]")
_MESSAGE_CHARS = re.compile(r"[()\[\]{}?:]")
_BRACES = re.compile(r"[{}]")
# The scans below look only at the characters that matter (found by a regex, in C), not at every
# character of a test source that may be megabytes of literals.


def find_statement_end(masked: str, start: int) -> int:
    """Index of the `;` that ends the statement starting at `start` (depth 0), or -1."""
    depth = 0
    for match in _STATEMENT_CHARS.finditer(masked, start):
        c = match.group()
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return -1
        elif depth == 0:  # ";"
            return match.start()
    return -1


def split_message(masked: str, start: int, end: int) -> int:
    """Offset of the `:` separating a Java assert's condition from its message, or -1."""
    depth, ternary = 0, 0
    for match in _MESSAGE_CHARS.finditer(masked, start, end):
        c, k = match.group(), match.start()
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
    if start < 0:
        return source
    depth = 0
    for brace in _BRACES.finditer(masked, start):
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            k = brace.start()
            return source[:k] + statement + source[k:]
    return source
