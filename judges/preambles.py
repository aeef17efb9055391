"""Verifiers for system-prompt preambles (Command A report, 3.3.1.3).

A preamble is a system-turn instruction (reply in French, JSON only, no Markdown, never say a
word, at most N words ...) with a `check` saying how a reply is verified:

- `{"instruction_id": ID, "kwargs": {...}}`: an IFEval check from `judges.ifeval`;
- `{"language": "fr"}`: the language check of `judges.language_id` (code and quotes ignored);
- `{"format": "no_markdown"}`: no headings, emphasis, bullets, numbered lists, tables or code
  fences (IFEval has no such check).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from judges.ifeval import check_instruction
from judges.language_id import LanguageIdentifier, check_language

_MARKDOWN = (
    re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE),  # heading
    re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),  # bold
    re.compile(r"^\s*[-*+]\s+\S", re.MULTILINE),  # bullet
    re.compile(r"^\s*\d+[.)]\s+\S", re.MULTILINE),  # numbered list
    re.compile(r"^\s*\|.*\|\s*$", re.MULTILINE),  # table row
    re.compile(r"```|^\s*>\s", re.MULTILINE),  # code fence, block quote
    re.compile(r"\[[^\]\n]+\]\([^)\n]+\)"),  # link
)
FORMATS = ("no_markdown",)


def has_markdown(text: str) -> bool:
    """True when `text` uses Markdown structure or emphasis."""
    return any(pattern.search(text) for pattern in _MARKDOWN)


def check_kind(check: Mapping[str, Any]) -> str:
    """The kind of a preamble check: `ifeval`, `language` or `format`.

    Raises:
        ValueError: the check is none of them, or names an unknown format.
    """
    if "instruction_id" in check:
        return "ifeval"
    if "language" in check:
        return "language"
    if check.get("format") in FORMATS:
        return "format"
    raise ValueError(
        f"preamble check {dict(check)!r}: expected `instruction_id` (+ `kwargs`), `language`, "
        f"or `format` (one of {', '.join(FORMATS)})"
    )


def verify_preamble(
    text: str, check: Mapping[str, Any], identifier: LanguageIdentifier | None = None
) -> bool:
    """Whether a reply follows a preamble's check (see the module docstring).

    Args:
        identifier: The language identifier for `language` checks (default: py3langid).

    Raises:
        ValueError: a malformed check; `judges.ifeval` errors for a bad IFEval id or kwarg.
    """
    kind = check_kind(check)
    if kind == "ifeval":
        return check_instruction(str(check["instruction_id"]), text, check.get("kwargs") or {})
    if kind == "language":
        return check_language(text, str(check["language"]), identifier or LanguageIdentifier()).ok
    return not has_markdown(text)
