"""Deterministic language identification with langdetect."""

from __future__ import annotations

from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException

# langdetect samples n-grams at random; a fixed seed makes every verdict reproducible.
DetectorFactory.seed = 0


def detect_language(text: str) -> str | None:
    """Return the ISO 639-1 code langdetect assigns to `text`.

    Args:
        text: Any text.

    Returns:
        The primary language subtag, lower case ("zh-cn" becomes "zh"), or None when langdetect
        finds no features (empty text, only digits or punctuation).
    """
    try:
        code = detect(text)
    except LangDetectException:
        return None
    return code.split("-")[0].lower()


def is_language(text: str, language: str) -> bool:
    """Say whether `text` is in `language`, as IFEval does.

    Args:
        text: The response.
        language: An ISO 639-1 code; a region suffix ("pt-BR") is ignored.

    Returns:
        True when the detected language matches. Also True when nothing can be detected:
        IFEval counts an undetectable response as following the instruction.
    """
    detected = detect_language(text)
    return detected is None or detected == language.split("-")[0].strip().lower()
