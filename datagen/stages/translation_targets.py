"""The target languages of code translation: what each asks the model for, how a reply splits into
a solution and its tests, and the broken variant of a translated solution its tests must catch.

Nothing here runs code: the solution, the tests and the broken variant are text, judged later in
the sandbox (datagen/stages/translation.py). A target language needs three things the sandbox
alone does not give: instructions for the sandbox's test shape (docs/sandbox.md), the pattern of
an assertion line (to tell the tests block from the solution block), and a broken variant of a
solution built without a model (so a vacuous test suite is caught deterministically):

- C++: every definition of the entry function gets a body that returns the zero value of its
  return type (`return {};`; an empty body for `void`); when that does not compile (an `auto`
  return type, a type with no default value) the fallback throws before the old body runs.
- JavaScript: the entry function is rebound after the program to one that returns `undefined`
  (a `const` binding of it becomes `let` so it can be).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.extract import code_blocks
from sandbox.languages import get_runner, language_names
from sandbox.languages.clike import mask

# -------------------------------------------------------------------------- broken variants


def _matching(masked: str, open_index: int, opening: str, closing: str) -> int | None:
    """Index of the bracket closing the one at `open_index` (in masked code), or None."""
    depth = 0
    for index in range(open_index, len(masked)):
        char = masked[index]
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return index
    return None


# After a C++ parameter list and before the body: qualifiers and a trailing return type.
_CPP_AFTER_PARAMS = re.compile(
    r"(?:\s|const\b|volatile\b|noexcept\b(?:\s*\([^()]*\))?|override\b|final\b|&&?|->[^{;]*)*\{"
)
_CPP_SPECIFIERS = re.compile(r"\b(?:static|inline|constexpr|extern|virtual|explicit|friend)\b")


def _cpp_return_type(masked: str, name_start: int) -> str:
    """The text between the previous declaration boundary and the function's name."""
    boundary = max(masked.rfind(mark, 0, name_start) for mark in (";", "}", "{", "\n#"))
    head = masked[boundary + 1 : name_start]
    head = re.sub(r"^\s*#[^\n]*", "", head)  # a preprocessor line right before
    head = re.sub(r"template\s*<.*>", "", head, flags=re.DOTALL)
    return _CPP_SPECIFIERS.sub("", head).strip()


def cpp_broken_variants(code: str, name: str) -> list[str]:
    """Broken variants of a C++ solution, best first: the zero-value body, then a throwing one.

    Returns:
        The variants; empty when no definition of `name` is found.
    """
    masked = mask(code)
    definitions: list[tuple[int, int, str, bool]] = []  # body start, body end, return type, trailing
    for match in re.finditer(rf"(?<![\w:.>]){re.escape(name)}\s*\(", masked):
        close = _matching(masked, match.end() - 1, "(", ")")
        if close is None:
            continue
        after = _CPP_AFTER_PARAMS.match(masked, close + 1)
        if after is None:
            continue
        body_start = after.end() - 1
        body_end = _matching(masked, body_start, "{", "}")
        if body_end is None:
            continue
        trailing = "->" in masked[close + 1 : body_start]
        definitions.append((body_start, body_end, _cpp_return_type(masked, match.start()), trailing))
    if not definitions:
        return []

    def replaced(body: Callable[[str, bool, str], str]) -> str:
        out, position = [], 0
        for start, end, returns, trailing in definitions:
            out += [code[position:start], body(returns, trailing, code[start + 1 : end])]
            position = end + 1
        return "".join(out) + code[position:]

    def zero(returns: str, trailing: bool, _body: str) -> str:
        if not trailing and re.fullmatch(r"void", returns):
            return "{ }"
        return "{ return {}; }"

    # Throwing before the old body keeps its return statements, so a deduced type still deduces.
    return [replaced(zero), replaced(lambda _r, _t, body: "{ throw 0;" + body + "}")]


def javascript_broken_variants(code: str, name: str) -> list[str]:
    """The JavaScript solution with its entry function rebound to one returning `undefined`.

    Returns:
        One variant; none when the program does not define `name`.
    """
    masked = mask(code, backtick_strings=True)
    escaped = re.escape(name)
    defined = re.search(
        rf"(?<![\w$.])(?:function\s*\*?\s*{escaped}\s*\(|(?:const|let|var)\s+{escaped}\s*=)", masked
    )
    if defined is None:
        return []
    unfrozen = re.sub(rf"(?<![\w$.])const(\s+{escaped}\s*=)", r"let\1", code)
    return [f"{unfrozen.rstrip()}\n;{name} = function () {{ return undefined; }};\n"]


# -------------------------------------------------------------------------- the languages


@dataclass(frozen=True)
class TargetLanguage:
    """What translation needs to know about one target language."""

    name: str  # the sandbox runner's name
    display: str  # how prompts name it
    assertion: str  # regex of an assertion in the tests (the sandbox runner's own)
    instructions: str  # the shape of the solution and the tests; `{name}` is the entry function
    broken_variants: Callable[[str, str], list[str]]

    @property
    def tags(self) -> tuple[str, ...]:
        """Fence info strings that name the language (the sandbox's aliases)."""
        return get_runner(self.name).aliases


TARGETS: dict[str, TargetLanguage] = {
    "cpp": TargetLanguage(
        name="cpp",
        display="C++",
        assertion=r"\bassert\s*\(",
        instructions=(
            "The solution block: the C++17 function `{name}` with the #include lines it needs, and no "
            "main(). The tests block: `#include <cassert>` and any headers the tests need, then "
            "`int main() {{ ... }}` checking each Python assert as one `assert(...);` line, such as "
            "`assert({name}(...) == ...);`. Do not define `{name}` again in the tests."
        ),
        broken_variants=cpp_broken_variants,
    ),
    "javascript": TargetLanguage(
        name="javascript",
        display="JavaScript",
        assertion=r"(?<![\w$.])assert\s*(?=[.(])",
        instructions=(
            "The solution block: a JavaScript function `function {name}(...) {{ ... }}`, with no "
            'exports and no console output. The tests block: `const assert = require("assert");` '
            "then each Python assert as one line, such as `assert.deepStrictEqual({name}(...), ...);`. "
            "Do not define `{name}` again in the tests."
        ),
        broken_variants=javascript_broken_variants,
    ),
}


def target_language(name: str) -> TargetLanguage:
    """The target language a name or sandbox alias stands for.

    Raises:
        ValueError: not a sandbox language, or one translation has no broken variant for.
    """
    supported = ", ".join(TARGETS)
    try:
        runner = get_runner(name)
    except KeyError:
        raise ValueError(
            f"unknown language {name!r}; translation targets: {supported} "
            f"(sandbox languages: {', '.join(language_names())})"
        ) from None
    if runner.name not in TARGETS:
        raise ValueError(f"{runner.name!r} is not a translation target yet; translation targets: {supported}")
    return TARGETS[runner.name]


def check_targets(languages: list[str]) -> list[str]:
    """Canonical names of target languages, each once (for a spec validator).

    Raises:
        ValueError: an unknown or unsupported language (see `target_language`).
    """
    names = [target_language(name).name for name in languages]
    return list(dict.fromkeys(names))


# -------------------------------------------------------------------------- replies and prompts


REASONS = (
    "no_code",  # no code block in the language
    "one_block",  # the solution or the tests are missing
    "no_tests",  # no block holds an assertion
    "solution_fails",  # the translated solution does not pass the translated tests
    "too_few_tests",  # it passes, but there are fewer tests than the minimum
    "no_entry_point",  # the solution does not define the entry function: no broken variant
    "broken_does_not_compile",  # no broken variant compiles with the tests
    "broken_not_caught",  # the tests pass on the broken variant: they are vacuous
)
"""Why a translation is dropped, in the order of the checks (a later reason got further)."""


@dataclass(frozen=True)
class ParsedReply:
    """A reply split into the translated solution and tests, or the reason it cannot be."""

    solution: str | None = None
    tests: str | None = None
    reason: str | None = None  # one of REASONS
    detail: str = ""


def parse_reply(text: str, language: TargetLanguage) -> ParsedReply:
    """The solution and the tests of a translation reply (two fenced blocks in the language).

    Blocks tagged with the language (or untagged, when none is) count; the tests block is the last
    one holding an assertion, the solution the first other block.
    """
    blocks = code_blocks(text)
    chosen = [b for b in blocks if b.tag in language.tags] or [b for b in blocks if not b.tag]
    chosen = [b.code for b in chosen if b.code.strip()]
    if not chosen:
        return ParsedReply(reason="no_code", detail=f"no {language.display} code block in the reply")
    if len(chosen) < 2:
        return ParsedReply(
            reason="one_block", detail="one code block; the reply needs the solution and the tests"
        )
    with_asserts = [
        i for i, code in enumerate(chosen) if re.search(language.assertion, mask(code, backtick_strings=True))
    ]
    if not with_asserts:
        return ParsedReply(reason="no_tests", detail="no code block holds an assertion")
    tests = with_asserts[-1]
    solution = next(code for i, code in enumerate(chosen) if i != tests)
    return ParsedReply(solution=solution, tests=chosen[tests])


_PASS_TESTS = re.compile(
    r"\n\s*Your code should pass (?:this test|these tests):.*\Z", re.DOTALL | re.IGNORECASE
)


def restate_prompt(prompt: str, language: TargetLanguage, tests: str | None, entry_point: str) -> str:
    """The problem statement for the target language: the Python prompt without its Python tests
    (MBPP's "Your code should pass ..." part), "Python" named as the target, then the translated
    tests (or, without them, the function's name)."""
    text = _PASS_TESTS.sub("", prompt.strip()).strip()
    text, renamed = re.subn(r"\bpython\b", language.display, text, flags=re.IGNORECASE)
    if not renamed:
        text += f"\nWrite the solution in {language.display}."
    if tests:
        return f"{text}\nYour code should pass these tests:\n{tests.strip()}"
    return f"{text}\nThe function is called `{entry_point}`."
