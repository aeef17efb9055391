"""Instruction ids: which are supported, which are not and why, aliases, and dispatch.

Ids follow IFEval ("punctuation:no_comma"). M-IFEval prefixes every id with a language
("fr:punctuation:no_comma"). `canonical_id` resolves an id in this order:

1. a language-specific id ("ja:letters:furigana", or "ja:detectable_format:title", whose
   Japanese version uses different markup) keeps its prefix;
2. otherwise a two-letter prefix is dropped, and an alias ("change_case:french_lowercase") is
   replaced by its target;
3. what is left is returned; it is either a generic id or unknown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from judges.ifeval import checkers, french, japanese, spanish
from judges.ifeval.errors import (
    InstructionArgumentError,
    InstructionError,
    UnsupportedInstructionError,
)

Checker = Callable[[str, Mapping[str, Any]], bool]

SUPPORTED: Final[Mapping[str, Checker]] = MappingProxyType(
    {
        # IFEval
        "punctuation:no_comma": checkers.no_comma,
        "length_constraints:number_words": checkers.number_words,
        "length_constraints:number_sentences": checkers.number_sentences,
        "length_constraints:number_paragraphs": checkers.number_paragraphs,
        "length_constraints:nth_paragraph_first_word": checkers.nth_paragraph_first_word,
        "keywords:existence": checkers.keyword_existence,
        "keywords:forbidden_words": checkers.forbidden_words,
        "keywords:frequency": checkers.keyword_frequency,
        "keywords:letter_frequency": checkers.letter_frequency,
        "detectable_format:json_format": checkers.json_format,
        "detectable_format:title": checkers.title,
        "detectable_format:number_bullet_lists": checkers.number_bullet_lists,
        "detectable_format:number_highlighted_sections": checkers.number_highlighted_sections,
        "detectable_format:multiple_sections": checkers.multiple_sections,
        "detectable_format:constrained_response": checkers.constrained_response,
        "change_case:english_lowercase": checkers.english_lowercase,
        "change_case:english_capital": checkers.english_capital,
        "change_case:capital_word_frequency": checkers.capital_word_frequency,
        "startend:end_checker": checkers.end_checker,
        "startend:quotation": checkers.quotation,
        "detectable_content:postscript": checkers.postscript,
        "detectable_content:number_placeholders": checkers.number_placeholders,
        "language:response_language": checkers.response_language,
        "combination:repeat_prompt": checkers.repeat_prompt,
        "combination:two_responses": checkers.two_responses,
        # ours
        "startend:start_checker": checkers.start_checker,
        "detectable_content:no_digits": checkers.no_digits,
        # M-IFEval, Japanese
        "ja:punctuation:no_comma": japanese.no_comma,
        "ja:punctuation:no_period": japanese.no_period,
        "ja:detectable_format:title": japanese.title,
        "ja:detectable_format:number_highlighted_sections": japanese.number_highlighted_sections,
        "ja:detectable_format:number_bullet_lists": japanese.number_bullet_lists,
        "ja:detectable_format:number_numbered_lists": japanese.number_numbered_lists,
        "ja:detectable_format:multiple_sections": japanese.multiple_sections,
        "ja:detectable_format:constrained_response": japanese.constrained_response,
        "ja:startend:quotation": japanese.quotation,
        "ja:startend:end_checker": japanese.end_checker,
        "ja:startend:sentence_unified_end": japanese.sentence_unified_end,
        "ja:keywords:forbidden_words": japanese.forbidden_words,
        "ja:keywords:letter_frequency": japanese.letter_frequency,
        "ja:length_constraints:number_sentences": japanese.number_sentences,
        "ja:length_constraints:number_letters": japanese.number_letters,
        "ja:length_constraints:nth_paragraph_first_word": japanese.nth_paragraph_first_word,
        "ja:letters:furigana": japanese.furigana,
        "ja:letters:kanji": japanese.kanji_limit,
        "ja:letters:hiragana_only": japanese.hiragana_only,
        "ja:letters:katakana_only": japanese.katakana_only,
        "ja:letters:no_hiragana": japanese.no_hiragana,
        "ja:letters:no_katakana": japanese.no_katakana,
        "ja:letters:kansuuji": japanese.kansuuji,
        # M-IFEval, French
        "fr:detectable_format:title": french.title,
        "fr:detectable_format:constrained_response": french.constrained_response,
        "fr:startend:quotation": french.quotation,
        "fr:detectable_content:informal_address": french.informal_address,
        "fr:special_character:accents": french.accents,
        "fr:special_character:no_accents": french.no_accents,
        "fr:special_character:ethel_or_cedilla": french.forbidden_char,
        # M-IFEval, Spanish
        "es:detectable_format:constrained_response": spanish.constrained_response,
        "es:punctuation:question_marks": spanish.question_marks,
        "es:punctuation:exclamation_marks": spanish.exclamation_marks,
        "es:special_character:enie": spanish.enie,
        "es:special_character:dieresis": spanish.dieresis,
        "es:special_character:tildes": spanish.tildes,
    }
)

UNSUPPORTED: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ja:detectable_format:nominal_ending": (
            "counting noun-ending sentences (体言止め) needs a Japanese part-of-speech tagger"
        ),
        # In IFEval's instructions.py but disabled in its own registry; no IFEval row uses them.
        "detectable_format:rephrase": "disabled in IFEval's registry; no IFEval prompt uses it",
        "detectable_content:rephrase_paragraph": ("disabled in IFEval's registry; no IFEval prompt uses it"),
        "keywords:key_sentences": "disabled in IFEval's registry; no IFEval prompt uses it",
        "multi-turn:constrained_start": "disabled in IFEval's registry; no IFEval prompt uses it",
    }
)


class Alias(NamedTuple):
    """Where an alias id points, and kwargs it implies (defaults the row's kwargs override)."""

    target: str
    implied: Mapping[str, Any]


_CASE_LANGUAGES: Final = {
    "french": "fr",
    "spanish": "es",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
}

# "<language>_lowercase" is english_lowercase's rule (all lower case, response in the language)
# with the language swapped, so it is an alias that sets the checker's `language` kwarg.
ALIASES: Final[Mapping[str, Alias]] = MappingProxyType(
    {
        f"change_case:{name}_{case}": Alias(
            f"change_case:english_{case}", MappingProxyType({"language": code})
        )
        for name, code in _CASE_LANGUAGES.items()
        for case in ("lowercase", "capital")
    }
)

_PREFIX_RE: Final = re.compile(r"([A-Za-z]{2}):(?=.)")
_NO_IMPLIED: Final[Mapping[str, Any]] = MappingProxyType({})


def _resolve(instruction_id: str) -> Alias:
    """Return the canonical id of `instruction_id` and the kwargs its alias implies."""
    value = instruction_id.strip()
    prefix = _PREFIX_RE.match(value)
    if prefix:
        value = prefix.group(1).lower() + value[2:]
        if value in SUPPORTED or value in UNSUPPORTED:
            return Alias(value, _NO_IMPLIED)
        value = value[3:]
    alias = ALIASES.get(value)
    if alias is not None:
        return alias
    return Alias(value, _NO_IMPLIED)


def canonical_id(instruction_id: str) -> str:
    """Map an IFEval or M-IFEval instruction id to the id used in `SUPPORTED`/`UNSUPPORTED`.

    Args:
        instruction_id: E.g. "punctuation:no_comma", "fr:punctuation:no_comma",
            "es:change_case:spanish_lowercase" or "ja:letters:furigana".

    Returns:
        The canonical id: "punctuation:no_comma", "punctuation:no_comma",
        "change_case:english_lowercase" and "ja:letters:furigana" for those examples. An unknown
        id comes back without its language prefix.
    """
    return _resolve(instruction_id).target


def check_instruction(instruction_id: str, response: str, kwargs: Mapping[str, Any] | None) -> bool:
    """Say whether `response` follows one instruction.

    Args:
        instruction_id: An IFEval or M-IFEval id; see `canonical_id`.
        response: The model's response.
        kwargs: The instruction's kwargs with IFEval names. None values are dropped first, since
            Arrow struct columns fill keys a row lacks with None; None means no kwargs.

    Returns:
        True when the instruction is followed.

    Raises:
        UnsupportedInstructionError: The id is unknown or listed in `UNSUPPORTED`.
        InstructionArgumentError: A kwarg is missing, of the wrong type or out of range.
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a mapping or None, got {type(kwargs).__name__}")
    canonical, implied = _resolve(instruction_id)
    if canonical in UNSUPPORTED:
        raise UnsupportedInstructionError(instruction_id, UNSUPPORTED[canonical])
    checker = SUPPORTED.get(canonical)
    if checker is None:
        raise UnsupportedInstructionError(instruction_id, "unknown instruction id")
    given = {key: value for key, value in (kwargs or {}).items() if value is not None}
    try:
        return checker(response, {**implied, **given})
    except InstructionArgumentError as err:
        raise err.for_instruction(instruction_id) from None


def verify_response(
    response: str,
    instruction_ids: Sequence[str],
    kwargs_list: Sequence[Mapping[str, Any] | None],
) -> list[bool]:
    """Check one response against every instruction of its prompt.

    Args:
        response: The model's response.
        instruction_ids: The prompt's instruction ids (IFEval's `instruction_id_list`).
        kwargs_list: One kwargs mapping (or None) per instruction id, in the same order.

    Returns:
        One bool per instruction, True where it is followed.

    Raises:
        InstructionError: The two sequences differ in length, or (as a subclass) an id is
            unsupported or its kwargs are bad.
    """
    if len(instruction_ids) != len(kwargs_list):
        raise InstructionError(
            f"{len(instruction_ids)} instruction ids but {len(kwargs_list)} kwargs entries;"
            " they must pair up one to one"
        )
    return [
        check_instruction(instruction_id, response, kwargs)
        for instruction_id, kwargs in zip(instruction_ids, kwargs_list, strict=True)
    ]
