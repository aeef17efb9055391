"""Is a reply in the language it should be in? Language identification of short texts.

Code blocks, inline code and quoted passages are removed before identification: a French reply
that quotes an English error message or shows a Python function is still French. What is left
is identified by a well-kept library (py3langid by default, the fastest and, on the m-IFEval
prompts, the most accurate of those measured: docs/multilingual.md); a reply with too few
letters left to tell is not judged (`undetermined`) rather than failed.

    >>> identifier = LanguageIdentifier()
    >>> check_language("Voici la réponse : il faut arroser les plantes le matin.", "fr", identifier).ok
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

Backend = Literal["py3langid", "lingua", "langdetect"]
BACKENDS: tuple[Backend, ...] = ("py3langid", "lingua", "langdetect")

_FENCED = re.compile(r"```.*?(```|\Z)|~~~.*?(~~~|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_BLOCKQUOTE = re.compile(r"^\s*>.*$", re.MULTILINE)
# Quoted passages: straight and typographic double quotes, guillemets, Japanese brackets.
_QUOTES = re.compile(r'"[^"\n]*"|“[^”\n]*”|«[^»\n]*»|「[^」\n]*」|『[^』\n]*』|„[^“\n]*“')
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def strip_code_and_quotes(text: str) -> str:
    """The text without fenced code blocks, inline code, block quotes and quoted passages."""
    for pattern in (_FENCED, _INLINE_CODE, _BLOCKQUOTE, _QUOTES):
        text = pattern.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def letter_count(text: str) -> int:
    """How many letters (of any script) a text has."""
    return len(_LETTER.findall(text))


class LanguageIdentifier:
    """Identify the language of a text (ISO 639-1 code) with one of several libraries.

    Args:
        backend: `py3langid` (langid.py's model, numpy only), `lingua` (lingua-language-detector,
            n-gram models of 75 languages) or `langdetect`.
        languages: Restrict the answer to these ISO 639-1 codes (None: every language the
            library knows). A restriction makes short texts easier but hides other languages.
    """

    def __init__(self, backend: Backend = "py3langid", languages: list[str] | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown language-ID backend {backend!r}; known: {', '.join(BACKENDS)}")
        self.backend = backend
        self.languages = sorted(set(languages)) if languages else None

    @cached_property
    def _detector(self) -> object:
        if self.backend == "py3langid":
            from py3langid.langid import _load_identifier

            # norm_probs: probabilities in [0, 1] rather than raw log scores.
            return _load_identifier(norm_probs=True, langs=self.languages)
        if self.backend == "lingua":
            from lingua import IsoCode639_1, LanguageDetectorBuilder

            if self.languages:
                codes = [getattr(IsoCode639_1, code.upper()) for code in self.languages]
                builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
            else:
                builder = LanguageDetectorBuilder.from_all_languages()
            return builder.with_preloaded_language_models().build()
        from langdetect import DetectorFactory

        factory = DetectorFactory()
        factory.load_profile(_langdetect_profiles())
        factory.seed = 0  # langdetect samples n-grams at random: seed it for repeatable answers
        return factory

    def detect(self, text: str) -> tuple[str | None, float]:
        """The most likely language of `text` and its probability; (None, 0.0) if none is found."""
        if not text.strip():
            return None, 0.0
        detector = self._detector
        if self.backend == "py3langid":
            code, probability = detector.classify(text)  # type: ignore[attr-defined]
            return str(code), float(probability)
        if self.backend == "lingua":
            values = detector.compute_language_confidence_values(text)  # type: ignore[attr-defined]
            if not values:
                return None, 0.0
            top = values[0]
            return top.language.iso_code_639_1.name.lower(), float(top.value)
        from langdetect.lang_detect_exception import LangDetectException

        detect = detector.create()  # type: ignore[attr-defined]
        if self.languages:
            detect.set_prior_map({code: 1.0 for code in self.languages if code in detect.langlist})
        detect.append(text)
        try:
            best = detect.get_probabilities()[0]
        except (LangDetectException, IndexError):
            return None, 0.0
        return best.lang.split("-")[0], float(best.prob)


def _langdetect_profiles() -> str:
    from pathlib import Path

    import langdetect

    return str(Path(langdetect.__file__).parent / "profiles")


@dataclass(frozen=True)
class LanguageCheck:
    """The verdict on one reply.

    Attributes:
        ok: The reply is in the expected language, or too short to tell.
        expected: The language it should be in.
        detected: The language identified (None when undetermined).
        confidence: The identifier's probability for `detected`.
        undetermined: Fewer than `min_letters` letters were left after stripping.
    """

    ok: bool
    expected: str
    detected: str | None
    confidence: float
    undetermined: bool


def check_language(
    text: str, expected: str, identifier: LanguageIdentifier, *, min_letters: int = 12
) -> LanguageCheck:
    """Check that `text` (code and quotes ignored) is in the language `expected` (ISO 639-1).

    A reply with fewer than `min_letters` letters left is not judged (ok, undetermined): a bare
    number or a code-only answer has no language to be wrong in.
    """
    expected = expected.lower().split("-")[0]
    prose = strip_code_and_quotes(text)
    if letter_count(prose) < min_letters:
        return LanguageCheck(True, expected, None, 0.0, True)
    detected, confidence = identifier.detect(prose)
    return LanguageCheck(detected == expected, expected, detected, confidence, False)
