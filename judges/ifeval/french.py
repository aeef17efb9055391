"""Checkers for M-IFEval's French instructions (ids prefixed "fr:").

The rules follow M-IFEval (Dussolle et al. 2025, arXiv:2502.04688); departures are noted per
checker.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from judges.ifeval.arguments import Kwargs, get_str, get_str_map
from judges.ifeval.text import words

CONSTRAINED_OPTIONS: Final = ("oui.", "non.", "peut-être.")
_QUOTE_PAIRS: Final = (('"', '"'), ("'", "'"), ("«", "»"), ("“", "”"))
_TITLE_RE: Final = re.compile(r"##([^\n#]+)##")
# Second-person singular forms: tu, te, t' (elided), toi, ton, ta, tes.
_TUTOIEMENT_RE: Final = re.compile(r"(?<!\w)(?:tu|te|toi|ton|ta|tes)(?!\w)|(?<!\w)t['’](?=\w)", re.IGNORECASE)


def strip_accents(text: str) -> str:
    """Remove diacritics from Latin letters ("événement" -> "evenement", "leçon" -> "lecon").

    Args:
        text: Any text.

    Returns:
        The text with combining marks removed after canonical decomposition.
    """
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _is_accented_latin(ch: str) -> bool:
    decomposed = unicodedata.normalize("NFD", ch)
    return len(decomposed) > 1 and decomposed[0].isascii() and decomposed[0].isalpha()


def title(response: str, kwargs: Kwargs) -> bool:
    """fr:detectable_format:title: a non-blank title wrapped in double hashes, ##title##.

    The French prompts ask for ##title##; M-IFEval's code still looks for <<title>>, which
    would fail every response that obeys the prompt, so this follows the prompt.
    """
    return any(inner.strip() for inner in _TITLE_RE.findall(response))


def quotation(response: str, kwargs: Kwargs) -> bool:
    """fr:startend:quotation: the whole response is wrapped in quotes: "…", '…', «…» or “…”."""
    value = response.strip()
    return len(value) > 1 and any(
        value.startswith(left) and value.endswith(right) for left, right in _QUOTE_PAIRS
    )


def constrained_response(response: str, kwargs: Kwargs) -> bool:
    """fr:detectable_format:constrained_response: contains "Oui.", "Non." or "Peut-être.".

    Case is ignored because some M-IFEval prompts also demand an all-lower-case answer.
    """
    value = response.casefold()
    return any(option in value for option in CONSTRAINED_OPTIONS)


def informal_address(response: str, kwargs: Kwargs) -> bool:
    """fr:detectable_content:informal_address: the response uses tutoiement.

    Followed when a second-person singular form (tu, te, t', toi, ton, ta, tes) appears.
    """
    return _TUTOIEMENT_RE.search(response) is not None


def accents(response: str, kwargs: Kwargs) -> bool:
    """fr:special_character:accents: listed words are written with their accents.

    Kwargs: `word_to_accentuate`, a mapping from the unaccented word to its accented form.
    Every word of the response whose unaccented form is a key must equal that key's value
    (ignoring case). As in M-IFEval, words that are valid without accents (the key "a" for "à")
    are flagged too.
    """
    targets = {
        strip_accents(key.strip().casefold()): value.strip().casefold()
        for key, value in get_str_map(kwargs, "word_to_accentuate").items()
    }
    for word in words(response.casefold()):
        expected = targets.get(strip_accents(word))
        if expected is not None and word != expected:
            return False
    return True


def no_accents(response: str, kwargs: Kwargs) -> bool:
    """fr:special_character:no_accents: no Latin letter carries a diacritic (é, à, ç, ï, ...)."""
    return not any(_is_accented_latin(ch) for ch in response)


def forbidden_char(response: str, kwargs: Kwargs) -> bool:
    """fr:special_character:ethel_or_cedilla: `forbidden_char` (e.g. "œ", "ç") is absent, any case."""
    char = get_str(kwargs, "forbidden_char").strip().casefold()
    return char not in response.casefold()
