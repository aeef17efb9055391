"""Find the program in a model's completion: fenced code blocks (```lang or ~~~lang) by language.

Rules, in order: blocks whose info string names the language (or one of its aliases, e.g. `py`,
`c++`, `golang`, `ts`); failing that, blocks with no info string. Of those, the longest one is
the program (a completion often shows the solution and then a shorter usage example). A fence
left open at the end of the text (a completion cut by max_tokens) runs to the end. No block at
all means no code: the verdict is `no_code` and the reward -1.0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# An opening fence: up to 3 spaces, 3+ backticks or tildes, then an optional info string.
_FENCE = re.compile(r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$", re.MULTILINE)


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: its info-string language tag (lowercased, may be empty) and its code."""

    tag: str
    code: str


def code_blocks(text: str) -> list[CodeBlock]:
    """Every fenced block of `text` in order (CommonMark-style fences, nesting not supported)."""
    blocks: list[CodeBlock] = []
    position = 0
    while match := _FENCE.search(text, position):
        fence = match["fence"]
        tag = match["info"].strip().split(maxsplit=1)[0].lower() if match["info"].strip() else ""
        start = match.end() + 1
        # The closing fence uses the same character, at least as long, and nothing after it.
        closing = re.compile(rf"^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = closing.search(text, start) if start <= len(text) else None
        code = text[start : end.start()] if end else text[start:]
        blocks.append(CodeBlock(tag, code.rstrip("\n") + "\n" if code.strip() else ""))
        position = end.end() if end else len(text)
    return blocks


def extract_code(
    text: str, aliases: tuple[str, ...], select: Literal["longest", "first", "last"] = "longest"
) -> str | None:
    """The program for a language in a completion, or None when it has no usable block.

    Args:
        text: The completion.
        aliases: Info-string tags that name the language, lowercase (e.g. ("python", "py")).
        select: Which block wins when several match.
    """
    blocks = code_blocks(text)
    chosen = [b for b in blocks if b.tag in aliases] or [b for b in blocks if not b.tag]
    chosen = [b for b in chosen if b.code.strip()]
    if not chosen:
        return None
    if select == "first":
        return chosen[0].code
    if select == "last":
        return chosen[-1].code
    return max(chosen, key=lambda b: len(b.code)).code
