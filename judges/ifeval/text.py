"""Splitting a response into words, sentences and paragraphs.

Words are runs of Unicode word characters (`\\w+`), so accented Latin words ("été", "niño")
count as one word and an elision ("l'été") as two, as in IFEval's `\\w+` tokenizer.

Sentences end at `.`, `!`, `?` or `…` (or a run of them, e.g. "?!" or "...") followed by
optional closing quotes or brackets and then whitespace or the end of the text, and right after
the CJK terminators `。！？`, which need no following space. A single `.` does not end a sentence
after:

* a known abbreviation ("Dr.", "Mrs.", "vs.", "Sra.", "Mme.", "bzw."; see `ABBREVIATIONS`);
  "etc." is left out on purpose because it usually closes a sentence;
* a single letter, i.e. an initial ("J. K. Rowling");
* a dotted acronym ("U.S.", "e.g.", "i.e.", "Ph.D.");
* a number that opens its line, i.e. a numbered-list marker ("1. Buy milk").

Decimals ("3.14") never split because no space follows the dot. Line breaks do not end a
sentence (IFEval joins lines before splitting). A piece with no word character, such as a lone
"...", is not counted.

Paragraphs come in two flavours, as in IFEval: separated by a markdown divider line `***` (for
`number_paragraphs`) or by blank lines (for `nth_paragraph_first_word`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_WORD_RE: Final = re.compile(r"\w+")

ABBREVIATIONS: Final[frozenset[str]] = frozenset(
    {
        # English
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "inc", "ltd", "co", "corp",
        "dept", "fig", "figs", "approx", "cf", "vol", "pp", "mt", "ft", "ave", "jan", "feb",
        "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
        # French
        "mme", "mmes", "mlle", "mlles", "env", "ex",
        # Spanish and Portuguese
        "sra", "sras", "srta", "dra", "ud", "uds", "vd", "vds", "pág", "núm", "av",
        # German and Italian
        "bzw", "usw", "ca", "nr", "sig", "dott", "ing",
    }
)  # fmt: skip

_BOUNDARY_RE: Final = re.compile(
    r"""(?P<latin>[.!?…]+)["'”’»)\]]*(?=\s|$)   # Latin terminators need a space or the end
      | [。！？]+[」』）”’]*                      # CJK ones do not""",
    re.VERBOSE,
)
_ACRONYM_RE: Final = re.compile(r"(?:[^\W\d_]{1,3}\.)+[^\W\d_]{1,3}")
_LEADING_PUNCT: Final = "([{\"'«“‘¿¡*_"
_DIVIDER_RE: Final = re.compile(r"^[ \t]*\*\*\*[ \t]*$", re.MULTILINE)
_BLANK_LINE_RE: Final = re.compile(r"\n[ \t]*\n")


def words(text: str) -> list[str]:
    """Split `text` into words.

    Args:
        text: Any text.

    Returns:
        The runs of Unicode word characters, in order. The text is NFC-normalised first so a
        decomposed "é" (e + combining accent) stays inside its word.
    """
    return _WORD_RE.findall(unicodedata.normalize("NFC", text))


def _dot_ends_sentence(text: str, start: int, end: int) -> bool:
    """Decide whether the `.` at `text[end]` closes the sentence that began at `start`."""
    before = text[start:end]
    if not before or before[-1].isspace():
        return True
    token = before.split()[-1]
    core = token.lstrip(_LEADING_PUNCT)
    if not core:
        return True
    if core.lower() in ABBREVIATIONS:
        return False
    if len(core) == 1 and core.isalpha():
        return False
    if _ACRONYM_RE.fullmatch(core):
        return False
    if core.isdigit():
        line_start = text.rfind("\n", 0, end) + 1
        if not text[line_start : end - len(token)].strip():
            return False
    return True


def sentences(text: str) -> list[str]:
    """Split `text` into sentences with the rule in the module docstring.

    Args:
        text: Any text.

    Returns:
        The sentences, stripped, each holding at least one word character.
    """
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY_RE.finditer(text):
        if match.group("latin") == "." and not _dot_ends_sentence(text, start, match.start()):
            continue
        pieces.append(text[start : match.end()])
        start = match.end()
    pieces.append(text[start:])
    return [piece.strip() for piece in pieces if _WORD_RE.search(piece)]


def paragraphs_by_divider(text: str) -> list[str] | None:
    """Split `text` on markdown divider lines (a line holding only `***`).

    Args:
        text: Any text.

    Returns:
        The stripped paragraphs. A divider at the very start or end is ignored; None when two
        dividers enclose nothing, which IFEval treats as a malformed response.
    """
    parts = [part.strip() for part in _DIVIDER_RE.split(text)]
    if parts and not parts[0]:
        parts = parts[1:]
    if parts and not parts[-1]:
        parts = parts[:-1]
    if any(not part for part in parts):
        return None
    return parts


def paragraphs_by_blank_line(text: str) -> list[str]:
    """Split `text` on blank lines.

    Args:
        text: Any text.

    Returns:
        The stripped, non-empty paragraphs.
    """
    return [part.strip() for part in _BLANK_LINE_RE.split(text) if part.strip()]
