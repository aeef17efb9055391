"""Checkers for the language-neutral IFEval instructions, in strict mode.

Each checker has the signature `(response, kwargs) -> bool`: True when `response` follows the
instruction. `kwargs` uses IFEval's names and must not hold None values (the registry drops
them). The rules follow Google's IFEval (Zhou et al. 2023, arXiv:2311.07911); where this code
departs from it, the checker's docstring says so and why. Regexes built from kwargs escape them:
IFEval splices keywords into patterns raw, so a keyword like "c++" would break it.
"""

from __future__ import annotations

import json
import re
from typing import Final

from judges.ifeval.arguments import (
    Kwargs,
    get_int,
    get_relation,
    get_str,
    get_str_list,
)
from judges.ifeval.errors import InstructionArgumentError
from judges.ifeval.language import is_language
from judges.ifeval.text import (
    paragraphs_by_blank_line,
    paragraphs_by_divider,
    sentences,
    words,
)

CONSTRAINED_OPTIONS: Final = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

# A bullet marker opens the line; as in IFEval no space is needed after it ("*item", "-item").
_BULLET_RE: Final = re.compile(r"[ \t]*(?:\*(?!\*)|-)(?=.*\S)")
_THEMATIC_BREAK_RE: Final = re.compile(r"[ \t]*([*-])(?:[ \t]*\1){2,}[ \t]*")
_SINGLE_HIGHLIGHT_RE: Final = re.compile(r"\*([^\n*]*)\*")
_DOUBLE_HIGHLIGHT_RE: Final = re.compile(r"\*\*([^\n*]*)\*\*")
_TITLE_RE: Final = re.compile(r"<<([^\n]+)>>")
_PLACEHOLDER_RE: Final = re.compile(r"\[.*?\]")
_DIGIT_RE: Final = re.compile(r"[0-9０-９]")
# Line start, then whitespace or markdown emphasis/quote/heading marks, before a postscript.
_LINE_START: Final = r"^[\s>*_#]*"


# --- punctuation, case ---------------------------------------------------------------------


def no_comma(response: str, kwargs: Kwargs) -> bool:
    """punctuation:no_comma: the response holds no ASCII comma."""
    return "," not in response


def english_lowercase(response: str, kwargs: Kwargs) -> bool:
    """change_case:english_lowercase: all cased letters are lower case and the language is right.

    Kwargs: `language` (optional, default "en"): our extension, set by the alias table so that
    e.g. change_case:french_lowercase means the same rule for French.
    """
    language = get_str(kwargs, "language", default="en")
    return response.islower() and is_language(response, language)


def english_capital(response: str, kwargs: Kwargs) -> bool:
    """change_case:english_capital: all cased letters are capitals and the language is right.

    Kwargs: `language` (optional, default "en"), as for `english_lowercase`. The language is
    detected on the lower-cased text: langdetect misreads all-capital text (French in capitals
    comes out as German).
    """
    language = get_str(kwargs, "language", default="en")
    return response.isupper() and is_language(response.lower(), language)


def capital_word_frequency(response: str, kwargs: Kwargs) -> bool:
    """change_case:capital_word_frequency: count of all-capital words vs a threshold.

    Kwargs: `capital_frequency`, `capital_relation`. Words are `\\w+` runs (IFEval uses NLTK's
    tokenizer); a word counts when it has a cased letter and no lower-case one.
    """
    frequency = get_int(kwargs, "capital_frequency")
    relation = get_relation(kwargs, "capital_relation")
    count = sum(1 for word in words(response) if word.isupper())
    return relation(count, frequency)


# --- length --------------------------------------------------------------------------------


def number_words(response: str, kwargs: Kwargs) -> bool:
    """length_constraints:number_words: word count vs `num_words` under `relation`."""
    num_words = get_int(kwargs, "num_words")
    relation = get_relation(kwargs, "relation")
    return relation(len(words(response)), num_words)


def number_sentences(response: str, kwargs: Kwargs) -> bool:
    """length_constraints:number_sentences: sentence count vs `num_sentences` under `relation`.

    Sentences are split by `judges.ifeval.text.sentences`.
    """
    num_sentences = get_int(kwargs, "num_sentences")
    relation = get_relation(kwargs, "relation")
    return relation(len(sentences(response)), num_sentences)


def number_paragraphs(response: str, kwargs: Kwargs) -> bool:
    """length_constraints:number_paragraphs: exactly `num_paragraphs` paragraphs split by `***`.

    Unlike IFEval, `***` must stand on its own line (a markdown divider), so bold-italic
    `***text***` does not split a paragraph.
    """
    num_paragraphs = get_int(kwargs, "num_paragraphs")
    paragraphs = paragraphs_by_divider(response)
    return paragraphs is not None and len(paragraphs) == num_paragraphs


def starts_with_phrase(paragraph: str, phrase: str) -> bool:
    """Say whether `paragraph` opens with the words of `phrase`, ignoring case.

    Leading punctuation and markdown (quotes, `*`, `#`) are skipped, and the phrase must end at
    a word boundary: "It's" starts with "it", "Itself" does not. Multi-word phrases ("Desde mi
    punto de vista", used by M-IFEval) match whatever punctuation separates the words.

    Args:
        paragraph: The paragraph text.
        phrase: One or more words.

    Returns:
        True when the paragraph starts with the phrase.
    """
    phrase_words = words(phrase.casefold())
    if not phrase_words:
        return False
    pattern = r"\W*" + r"\W+".join(map(re.escape, phrase_words)) + r"(?!\w)"
    return re.match(pattern, paragraph.casefold()) is not None


def nth_paragraph_first_word(response: str, kwargs: Kwargs) -> bool:
    """length_constraints:nth_paragraph_first_word: paragraph count and nth paragraph's opening.

    Kwargs: `num_paragraphs`, `nth_paragraph` (1-based), `first_word`. Paragraphs are split on
    blank lines; there must be exactly `num_paragraphs` and the nth must start with
    `first_word` (see `starts_with_phrase`).
    """
    num_paragraphs = get_int(kwargs, "num_paragraphs")
    nth = get_int(kwargs, "nth_paragraph", minimum=1)
    first_word = get_str(kwargs, "first_word")
    paragraphs = paragraphs_by_blank_line(response)
    if len(paragraphs) != num_paragraphs or nth > len(paragraphs):
        return False
    return starts_with_phrase(paragraphs[nth - 1], first_word)


# --- keywords ------------------------------------------------------------------------------


def keyword_existence(response: str, kwargs: Kwargs) -> bool:
    """keywords:existence: every keyword in `keywords` occurs, ignoring case.

    As in IFEval this is a substring test ("cat" is found in "category").
    """
    keywords = get_str_list(kwargs, "keywords")
    return all(re.search(re.escape(k.strip()), response, re.IGNORECASE) for k in keywords)


def forbidden_words(response: str, kwargs: Kwargs) -> bool:
    """keywords:forbidden_words: no word of `forbidden_words` occurs as a whole word, any case."""
    forbidden = get_str_list(kwargs, "forbidden_words")
    for word in forbidden:
        pattern = r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)"
        if re.search(pattern, response, re.IGNORECASE):
            return False
    return True


def keyword_frequency(response: str, kwargs: Kwargs) -> bool:
    """keywords:frequency: occurrences of `keyword` vs `frequency` under `relation`.

    Occurrences are counted as IFEval does: non-overlapping substrings, ignoring case.
    """
    keyword = get_str(kwargs, "keyword").strip()
    frequency = get_int(kwargs, "frequency")
    relation = get_relation(kwargs, "relation")
    count = len(re.findall(re.escape(keyword), response, re.IGNORECASE))
    return relation(count, frequency)


def letter_frequency(response: str, kwargs: Kwargs) -> bool:
    """keywords:letter_frequency: occurrences of `letter` vs `let_frequency` under `let_relation`.

    Case is ignored; `letter` must be one character, and may be any ("#" and "!" appear in IFEval
    data). A longer `letter` is an error, as in IFEval.
    """
    letter = get_str(kwargs, "letter").strip()
    if len(letter) != 1:
        raise InstructionArgumentError("letter", f"must be a single character, got {letter!r}")
    letter = letter.lower()
    frequency = get_int(kwargs, "let_frequency")
    relation = get_relation(kwargs, "let_relation")
    return relation(response.lower().count(letter), frequency)


# --- format --------------------------------------------------------------------------------


def json_format(response: str, kwargs: Kwargs) -> bool:
    """detectable_format:json_format: the whole response parses as JSON.

    A surrounding markdown fence (```, ```json) is allowed, as in IFEval.
    """
    value = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        if value.startswith(fence):
            value = value[len(fence) :]
            break
    value = value.removesuffix("```").strip()
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def title(response: str, kwargs: Kwargs) -> bool:
    """detectable_format:title: a non-blank title wrapped in double angular brackets, <<title>>."""
    return any(inner.strip("<> \t") for inner in _TITLE_RE.findall(response))


def number_bullet_lists(response: str, kwargs: Kwargs) -> bool:
    """detectable_format:number_bullet_lists: exactly `num_bullets` markdown bullets.

    A bullet is a line starting (after indentation) with "-", or with "*" not followed by a
    second "*", so "**bold**" lines are not bullets; as in IFEval no space is needed after the
    marker. Unlike IFEval, thematic breaks ("---", "* * *") and markers with nothing after them
    are not bullets.
    """
    num_bullets = get_int(kwargs, "num_bullets")
    count = sum(
        1
        for line in response.splitlines()
        if _BULLET_RE.match(line) and not _THEMATIC_BREAK_RE.fullmatch(line)
    )
    return count == num_bullets


def number_highlighted_sections(response: str, kwargs: Kwargs) -> bool:
    """detectable_format:number_highlighted_sections: enough *highlighted* spans.

    Kwargs: `num_highlights`; `relation` (optional, default "at least", added by M-IFEval).
    Non-blank `*text*` and `**text**` spans on one line count, as in IFEval.
    """
    num_highlights = get_int(kwargs, "num_highlights")
    relation = get_relation(kwargs, "relation", default="at least")
    count = sum(1 for inner in _SINGLE_HIGHLIGHT_RE.findall(response) if inner.strip())
    count += sum(1 for inner in _DOUBLE_HIGHLIGHT_RE.findall(response) if inner.strip())
    return relation(count, num_highlights)


def multiple_sections(response: str, kwargs: Kwargs) -> bool:
    """detectable_format:multiple_sections: enough sections headed "<section_spliter> <n>".

    Kwargs: `section_spliter` (e.g. "SECTION", case-sensitive), `num_sections`; `relation`
    (optional, default "at least", added by M-IFEval). As in IFEval, a section is counted for
    every "<spliter> <digits>" in the text.
    """
    spliter = get_str(kwargs, "section_spliter").strip()
    num_sections = get_int(kwargs, "num_sections")
    relation = get_relation(kwargs, "relation", default="at least")
    count = len(re.findall(re.escape(spliter) + r"\s?\d+", response))
    return relation(count, num_sections)


def constrained_response(response: str, kwargs: Kwargs) -> bool:
    """detectable_format:constrained_response: the response contains one of IFEval's options.

    The options are "My answer is yes.", "My answer is no." and "My answer is maybe.",
    matched case-sensitively.
    """
    value = response.strip()
    return any(option in value for option in CONSTRAINED_OPTIONS)


# --- start and end -------------------------------------------------------------------------


def end_checker(response: str, kwargs: Kwargs) -> bool:
    """startend:end_checker: the response ends with `end_phrase`, ignoring case.

    Surrounding whitespace and double quotes of the response are ignored, as in IFEval.
    """
    end_phrase = get_str(kwargs, "end_phrase").strip().lower()
    return response.strip().strip('"').lower().endswith(end_phrase)


def start_checker(response: str, kwargs: Kwargs) -> bool:
    """startend:start_checker (ours): the response starts with `start_phrase`, ignoring case.

    Leading whitespace of the response and surrounding whitespace of the phrase are ignored.
    """
    start_phrase = get_str(kwargs, "start_phrase").strip().casefold()
    return response.lstrip().casefold().startswith(start_phrase)


def quotation(response: str, kwargs: Kwargs) -> bool:
    """startend:quotation: the whole response is wrapped in double quotes."""
    value = response.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


# --- content -------------------------------------------------------------------------------


def postscript(response: str, kwargs: Kwargs) -> bool:
    """detectable_content:postscript: a line starts with `postscript_marker`, ignoring case.

    "P.S." and "P.P.S" accept optional spaces between the letters, as in IFEval. Unlike IFEval,
    the marker must open a line (after whitespace or markdown marks such as `**`): IFEval
    finds it anywhere, so a short marker like "PS" would match inside "temps".
    """
    marker = get_str(kwargs, "postscript_marker").strip()
    if marker == "P.P.S":
        body = r"p\.\s?p\.\s?s"
    elif marker == "P.S.":
        body = r"p\.\s?s\."
    else:
        body = re.escape(marker.lower()) + (r"(?!\w)" if marker[-1].isalnum() else "")
    return re.search(_LINE_START + body, response.lower(), re.MULTILINE) is not None


def number_placeholders(response: str, kwargs: Kwargs) -> bool:
    """detectable_content:number_placeholders: enough [placeholders] in square brackets.

    Kwargs: `num_placeholders`; `relation` (optional, default "at least", added by M-IFEval).
    """
    num_placeholders = get_int(kwargs, "num_placeholders")
    relation = get_relation(kwargs, "relation", default="at least")
    return relation(len(_PLACEHOLDER_RE.findall(response)), num_placeholders)


def no_digits(response: str, kwargs: Kwargs) -> bool:
    """detectable_content:no_digits (ours): no Arabic numerals 0-9, ASCII or full-width."""
    return _DIGIT_RE.search(response) is None


def response_language(response: str, kwargs: Kwargs) -> bool:
    """language:response_language: langdetect (seeded) finds `language` (ISO 639-1).

    Regional variants match their base language ("zh-cn" is "zh"). An undetectable response
    counts as followed, as in IFEval.
    """
    return is_language(response, get_str(kwargs, "language"))


# --- combination ---------------------------------------------------------------------------


def repeat_prompt(response: str, kwargs: Kwargs) -> bool:
    """combination:repeat_prompt: the response starts with `prompt_to_repeat`, ignoring case."""
    prompt = get_str(kwargs, "prompt_to_repeat").strip().lower()
    return response.strip().lower().startswith(prompt)


def two_responses(response: str, kwargs: Kwargs) -> bool:
    """combination:two_responses: two different non-empty answers separated by ******.

    Empty pieces are tolerated only before the first or after the last separator.
    """
    pieces = response.split("******")
    answers: list[str] = []
    for index, piece in enumerate(pieces):
        if piece.strip():
            answers.append(piece.strip())
        elif 0 < index < len(pieces) - 1:
            return False
    return len(answers) == 2 and answers[0] != answers[1]
