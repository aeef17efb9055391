"""Checkers for M-IFEval's Spanish instructions (ids prefixed "es:").

The rules follow M-IFEval (Dussolle et al. 2025, arXiv:2502.04688).
"""

from __future__ import annotations

import re
from typing import Final

from judges.ifeval.arguments import Kwargs, get_int, get_relation
from judges.ifeval.text import words

CONSTRAINED_OPTIONS: Final = ("sí.", "no.", "quizás.")
_ACUTE: Final = frozenset("áéíóúÁÉÍÓÚ")
_QUESTION_RE: Final = re.compile(r"¿([^?¿]*)\?")
_EXCLAMATION_RE: Final = re.compile(r"¡([^!¡]*)!")


def constrained_response(response: str, kwargs: Kwargs) -> bool:
    """es:detectable_format:constrained_response: contains "Sí.", "No." or "Quizás.".

    Case is ignored, so an all-lower-case answer (another instruction) still matches.
    """
    value = response.casefold()
    return any(option in value for option in CONSTRAINED_OPTIONS)


def question_marks(response: str, kwargs: Kwargs) -> bool:
    """es:punctuation:question_marks: a non-empty question in opening and closing marks, ¿…?."""
    return any(inner.strip() for inner in _QUESTION_RE.findall(response))


def exclamation_marks(response: str, kwargs: Kwargs) -> bool:
    """es:punctuation:exclamation_marks: a non-empty exclamation in both marks, ¡…!."""
    return any(inner.strip() for inner in _EXCLAMATION_RE.findall(response))


def _count_words_with(response: str, letter: str) -> int:
    return sum(1 for word in words(response.casefold()) if letter in word)


def enie(response: str, kwargs: Kwargs) -> bool:
    """es:special_character:enie: exactly `let_frequency` words contain ñ."""
    return _count_words_with(response, "ñ") == get_int(kwargs, "let_frequency")


def dieresis(response: str, kwargs: Kwargs) -> bool:
    """es:special_character:dieresis: exactly `let_frequency` words contain ü."""
    return _count_words_with(response, "ü") == get_int(kwargs, "let_frequency")


def tildes(response: str, kwargs: Kwargs) -> bool:
    """es:special_character:tildes: words with an acute accent (á é í ó ú) vs `num_words`.

    Kwargs: `num_words`, `relation` ("al menos" = at least, "como máximo" = at most).
    """
    num_words = get_int(kwargs, "num_words")
    relation = get_relation(kwargs, "relation")
    count = sum(1 for word in words(response) if _ACUTE.intersection(word))
    return relation(count, num_words)
