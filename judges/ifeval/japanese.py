"""Checkers for M-IFEval's Japanese instructions (ids prefixed "ja:").

Some are Japanese versions of IFEval instructions whose markup differs (titles in 『』,
highlights in 《》, bullets with ・, the comma 、), others are new (scripts, furigana). The rules
follow M-IFEval (Dussolle et al. 2025, arXiv:2502.04688); departures are noted per checker.
There is no morphological analyser here, so keywords are matched as substrings.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from judges.ifeval.arguments import Kwargs, get_int, get_relation, get_str, get_str_list
from judges.ifeval.text import paragraphs_by_blank_line

CONSTRAINED_OPTIONS: Final = ("はい、そうです。", "いいえ、違います。", "どちらとも言えません。")

_KANJI: Final = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々〆"
_KANJI_RE: Final = re.compile(f"[{_KANJI}]")
_KANJI_RUN_RE: Final = re.compile(f"[{_KANJI}]+")
_FURIGANA_RE: Final = re.compile(r"（[ぁ-ゖー]+）")
_HIRAGANA_RE: Final = re.compile(r"[ぁ-ゖゝゞ]")
_KATAKANA_RE: Final = re.compile(r"[ァ-ヺヽヾｦ-ﾟ]")
_SENTENCE_BREAK_RE: Final = re.compile(r"[\n。！？!?]+")
_QUOTED_RE: Final = re.compile(r"「[^「」]*」|『[^『』]*』")
_TITLE_RE: Final = re.compile(r"『([^\n』]+)』")
_HIGHLIGHT_RE: Final = re.compile(r"《([^\n《》]*)》")
_BULLET_RE: Final = re.compile(r"^[ \t　]*・(?!・)", re.MULTILINE)
_NUMBERED_RE: Final = re.compile(r"^[ \t　]*[0-9０-９]+[.．][ \t　]+\S", re.MULTILINE)
_DIGIT_RE: Final = re.compile(r"[0-9０-９]")


def _letters(text: str) -> list[str]:
    """Characters of a Unicode letter category; marks, digits and punctuation are ignored."""
    return [ch for ch in text if unicodedata.category(ch).startswith("L")]


# --- punctuation and markup ----------------------------------------------------------------


def no_comma(response: str, kwargs: Kwargs) -> bool:
    """ja:punctuation:no_comma: no Japanese comma (読点) 、."""
    return "、" not in response


def no_period(response: str, kwargs: Kwargs) -> bool:
    """ja:punctuation:no_period: no Japanese full stop (句点) 。."""
    return "。" not in response


def title(response: str, kwargs: Kwargs) -> bool:
    """ja:detectable_format:title: a non-blank title in double corner brackets, 『title』."""
    return any(inner.strip() for inner in _TITLE_RE.findall(response))


def number_highlighted_sections(response: str, kwargs: Kwargs) -> bool:
    """ja:detectable_format:number_highlighted_sections: at least `num_highlights` 《spans》."""
    num_highlights = get_int(kwargs, "num_highlights")
    relation = get_relation(kwargs, "relation", default="以上")
    count = sum(1 for inner in _HIGHLIGHT_RE.findall(response) if inner.strip())
    return relation(count, num_highlights)


def number_bullet_lists(response: str, kwargs: Kwargs) -> bool:
    """ja:detectable_format:number_bullet_lists: exactly `num_bullets` lines starting with ・."""
    return len(_BULLET_RE.findall(response)) == get_int(kwargs, "num_bullets")


def number_numbered_lists(response: str, kwargs: Kwargs) -> bool:
    """ja:detectable_format:number_numbered_lists: exactly `num_items` lines like "1. item".

    Full-width digits and dots ("１．") are accepted as well.
    """
    return len(_NUMBERED_RE.findall(response)) == get_int(kwargs, "num_items")


def multiple_sections(response: str, kwargs: Kwargs) -> bool:
    """ja:detectable_format:multiple_sections: at least `num_sections` "第N<section_spliter>".

    N may be written in ASCII, full-width or kanji digits ("第1章", "第１章", "第一章"); M-IFEval
    accepts only the first two.
    """
    spliter = get_str(kwargs, "section_spliter").strip()
    num_sections = get_int(kwargs, "num_sections")
    relation = get_relation(kwargs, "relation", default="以上")
    pattern = r"第[0-9０-９〇一二三四五六七八九十百]+" + re.escape(spliter)
    return relation(len(re.findall(pattern, response)), num_sections)


def constrained_response(response: str, kwargs: Kwargs) -> bool:
    """ja:detectable_format:constrained_response: contains one of M-IFEval's Japanese options.

    The options are "はい、そうです。", "いいえ、違います。" and "どちらとも言えません。".
    """
    return any(option in response for option in CONSTRAINED_OPTIONS)


def quotation(response: str, kwargs: Kwargs) -> bool:
    """ja:startend:quotation: the whole response is wrapped in corner brackets 「…」."""
    value = response.strip()
    return len(value) > 1 and value[0] == "「" and value[-1] == "」"


def end_checker(response: str, kwargs: Kwargs) -> bool:
    """ja:startend:end_checker: the response ends with `end_phrase`.

    Closing brackets 」』 and whitespace at either end are ignored, so a response wrapped in
    「…」 still ends with its phrase.
    """
    end_phrase = get_str(kwargs, "end_phrase").strip().strip("」』")
    return response.strip().strip("」』").strip().endswith(end_phrase)


def sentence_unified_end(response: str, kwargs: Kwargs) -> bool:
    """ja:startend:sentence_unified_end: every sentence ends with `ending` (e.g. "です").

    Quoted text in 「」 or 『』 is ignored; sentences end at 。！？ (or ! ?), and the text
    after the last one counts only if it is not blank.
    """
    ending = get_str(kwargs, "ending").strip()
    unquoted = _QUOTED_RE.sub("", response)
    pieces = (piece.strip() for piece in re.split(r"[。！？!?]", unquoted))
    return all(piece.endswith(ending) for piece in pieces if piece)


# --- keywords and length -------------------------------------------------------------------


def forbidden_words(response: str, kwargs: Kwargs) -> bool:
    """ja:keywords:forbidden_words: no forbidden word occurs as a substring.

    Japanese has no spaces, so the generic whole-word test would never fire. M-IFEval compares
    Janome tokens; a substring test is stricter (it also flags compounds that contain the word).
    """
    return not any(word.strip() in response for word in get_str_list(kwargs, "forbidden_words"))


def letter_frequency(response: str, kwargs: Kwargs) -> bool:
    """ja:keywords:letter_frequency: count of a kana `letter` vs `let_frequency`.

    Both the hiragana and the katakana form count ("か" also counts "カ"), as in M-IFEval.
    """
    letter = get_str(kwargs, "letter").strip()
    frequency = get_int(kwargs, "let_frequency")
    relation = get_relation(kwargs, "let_relation")
    count = response.count(letter)
    if len(letter) == 1 and "ぁ" <= letter <= "ゖ":
        count += response.count(chr(ord(letter) + 0x60))
    return relation(count, frequency)


def number_sentences(response: str, kwargs: Kwargs) -> bool:
    """ja:length_constraints:number_sentences: sentence count vs `num_sentences`.

    A sentence ends at 。！？ (or ! ?) or a line break, as in M-IFEval, whose prompts speak of
    lines (行) and sentences interchangeably. Pieces without a letter or digit do not count.
    """
    num_sentences = get_int(kwargs, "num_sentences")
    relation = get_relation(kwargs, "relation")
    pieces = _SENTENCE_BREAK_RE.split(response)
    count = sum(1 for piece in pieces if any(ch.isalnum() for ch in piece))
    return relation(count, num_sentences)


def number_letters(response: str, kwargs: Kwargs) -> bool:
    """ja:length_constraints:number_letters: character count vs `num_letters`.

    Whitespace (line breaks, indentation) is not counted; M-IFEval counts it.
    """
    num_letters = get_int(kwargs, "num_letters")
    relation = get_relation(kwargs, "relation")
    return relation(sum(1 for ch in response if not ch.isspace()), num_letters)


def nth_paragraph_first_word(response: str, kwargs: Kwargs) -> bool:
    """ja:length_constraints:nth_paragraph_first_word: paragraph count and nth paragraph start.

    Paragraphs are split on blank lines; there must be exactly `num_paragraphs`, and paragraph
    `nth_paragraph` must begin with `first_word` once leading brackets 「『 and markdown marks
    are skipped. Japanese has no word boundaries, so this is a prefix test.
    """
    num_paragraphs = get_int(kwargs, "num_paragraphs")
    nth = get_int(kwargs, "nth_paragraph", minimum=1)
    first_word = get_str(kwargs, "first_word").strip()
    paragraphs = paragraphs_by_blank_line(response)
    if len(paragraphs) != num_paragraphs or nth > len(paragraphs):
        return False
    return paragraphs[nth - 1].lstrip("「『#*_ \t　").startswith(first_word)


# --- scripts -------------------------------------------------------------------------------


def furigana(response: str, kwargs: Kwargs) -> bool:
    """ja:letters:furigana: every run of kanji is followed by its reading in （hiragana）.

    The reading must use full-width parentheses, as the prompts ask.
    """
    return all(_FURIGANA_RE.match(response, run.end()) for run in _KANJI_RUN_RE.finditer(response))


def kanji_limit(response: str, kwargs: Kwargs) -> bool:
    """ja:letters:kanji: number of kanji characters vs `kanji_limit` under `relation`."""
    limit = get_int(kwargs, "kanji_limit")
    relation = get_relation(kwargs, "relation")
    return relation(len(_KANJI_RE.findall(response)), limit)


def hiragana_only(response: str, kwargs: Kwargs) -> bool:
    """ja:letters:hiragana_only: every letter is hiragana (or the long-vowel mark ー)."""
    return all("ぁ" <= ch <= "ゖ" or ch in "ゝゞー" for ch in _letters(response))


def katakana_only(response: str, kwargs: Kwargs) -> bool:
    """ja:letters:katakana_only: every letter is katakana, full- or half-width (or ー)."""
    return all(_KATAKANA_RE.match(ch) or ch in "ーｰ" for ch in _letters(response))


def no_hiragana(response: str, kwargs: Kwargs) -> bool:
    """ja:letters:no_hiragana: no hiragana character."""
    return _HIRAGANA_RE.search(response) is None


def no_katakana(response: str, kwargs: Kwargs) -> bool:
    """ja:letters:no_katakana: no katakana character, full- or half-width.

    The long-vowel mark ー and the middle dot ・ are shared with other scripts and allowed.
    """
    return _KATAKANA_RE.search(response) is None


def kansuuji(response: str, kwargs: Kwargs) -> bool:
    """ja:letters:kansuuji: numbers are written in kanji, i.e. no digit 0-9 (ASCII or full-width)."""
    return _DIGIT_RE.search(response) is None
