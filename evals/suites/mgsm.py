"""MGSM: grade-school maths in many languages, scored by exact numeric match.

Each problem is asked in its own language, with an instruction in that language to reason step
by step and end with "The answer is" and the number (translated; a placeholder such as "N" in
the instruction gets copied verbatim by small models). The reply's answer is extracted by
`extract_answer`:

1. digits of any script become ASCII (full-width ０-９, Bengali, Thai, ...), full-width
   punctuation its ASCII form (NFKC);
2. if the reply contains an answer phrase ("The answer is", "La respuesta es", "答えは",
   "Ответ", ...), the first number after its last occurrence is the answer;
3. otherwise the last number in the reply.

A number may carry thousands separators (`1,000`, `1 000` with a no-break or thin space, and
`1.000` in languages that write decimals with a comma: de, es, fr, ru) and a decimal part;
currency signs and markdown around it are ignored. The gold answers are parsed the same way
(MGSM writes `2,125` in every language). A match is numeric equality.

The test split is 200 of the 250 problems in each language; the other 50 (the same problems in
every language) are the dev split (`split="dev"`, for choices such as the loop's merge weights;
eval_sets.dev_splits).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval_sets import identity, load_mgsm
from eval_sets.loaders import SPLIT_NAMES
from evals.base import EvalError, Metric, SuiteResult, mean_with_stderr
from evals.base import Generator as GeneratorProtocol
from evals.suites.common import first_reply, interleave, sampling_settings, user_turn

DEFAULT_MAX_TOKENS = 384
# The languages scored unless told otherwise: the high-resource ones SmolLM2-class models are
# trained on plus two other scripts (ja, zh) and Cyrillic (ru); `languages=` takes any of MGSM's 11.
DEFAULT_LANGUAGES = ("en", "es", "fr", "ja", "de", "zh", "ru")

INSTRUCTIONS: dict[str, str] = {
    "en": 'Solve the problem step by step. At the end, write "The answer is" followed by the final number.',
    "es": "Resuelve el problema paso a paso. Al final, escribe «La respuesta es» seguido del número final.",
    "fr": "Résous le problème étape par étape. À la fin, écris « La réponse est » suivi du nombre final.",
    "de": "Löse die Aufgabe Schritt für Schritt. Schreibe am Ende „Die Antwort ist“, gefolgt von der "
    "endgültigen Zahl.",
    "ru": "Реши задачу шаг за шагом. В конце напиши «Ответ:» и итоговое число.",
    "ja": "段階的に問題を解いてください。最後に「答えは」に続けて最終的な数値を書いてください。",
    "zh": "请一步一步地解决这个问题。最后写出“答案是”，后面接最终的数字。",
    "bn": "ধাপে ধাপে সমস্যাটির সমাধান করুন। শেষে «উত্তর হল» লিখে চূড়ান্ত সংখ্যাটি লিখুন।",
    "sw": 'Tatua tatizo hatua kwa hatua. Mwishoni, andika "Jibu ni" ikifuatiwa na nambari ya mwisho.',
    "te": 'సమస్యను దశలవారీగా పరిష్కరించండి. చివరగా "సమాధానం" అని రాసి తుది సంఖ్యను రాయండి.',
    "th": 'แก้โจทย์นี้ทีละขั้นตอน ในตอนท้ายให้เขียน "คำตอบคือ" ตามด้วยตัวเลขสุดท้าย',
}

# Phrases that introduce the final answer, in every language (a model may answer in English).
ANSWER_PHRASES = (
    r"answer is",
    r"answer:",
    r"respuesta es",
    r"respuesta:",
    r"réponse est",
    r"réponse\s*:",
    r"antwort ist",
    r"antwort:",
    r"ответ",
    r"答えは",
    r"答案是",
    r"答案[:：]",
    r"উত্তর হল",
    r"jibu ni",
    r"సమాధానం",
    r"คำตอบคือ",
)
_ANSWER = re.compile("|".join(ANSWER_PHRASES), re.IGNORECASE)
COMMA_DECIMAL_LANGUAGES = frozenset({"de", "es", "fr", "ru"})
# A run of digits with separators inside it; cleaned up by `_to_number`.
_NUMBER = re.compile(r"(?:(?<![\w-])-)?\d(?:[\d,.']*\d)?")
# No-break and thin spaces group thousands (fr, ru); NFKC would make them plain spaces, which
# separate numbers, so they become `'` (the Swiss grouping mark) first.
_GROUPING_SPACES = str.maketrans({"\u00a0": "'", "\u202f": "'", "\u2009": "'"})


def _ascii_digits(text: str) -> str:
    """NFKC (full-width forms), then any Unicode decimal digit as its ASCII digit."""
    text = unicodedata.normalize("NFKC", text.translate(_GROUPING_SPACES))
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def _to_number(token: str, language: str) -> float | None:
    """A number token's value; separators read as thousands or decimal marks (module docstring)."""
    token = token.replace("'", "")
    if "," in token and "." in token:
        decimal = "," if token.rfind(",") > token.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        token = token.replace(thousands, "").replace(decimal, ".")
    elif "," in token or "." in token:
        mark = "," if "," in token else "."
        head, *groups = token.split(mark)
        is_grouping = all(len(g) == 3 for g in groups) and len(head.lstrip("-")) <= 3
        thousands = is_grouping and (mark == "," or len(groups) > 1 or language in COMMA_DECIMAL_LANGUAGES)
        if thousands:
            token = token.replace(mark, "")
        elif len(groups) == 1:
            token = token.replace(mark, ".")
        else:
            return None  # "1.2.3": a version or a date, not a number
    try:
        return float(token)
    except ValueError:
        return None


def parse_number(text: str, language: str = "en") -> float | None:
    """The first number in `text` (see `extract_answer` for what counts), or None."""
    for match in _NUMBER.finditer(_ascii_digits(text)):
        value = _to_number(match.group(0), language)
        if value is not None:
            return value
    return None


def extract_answer(reply: str, language: str = "en") -> float | None:
    """The reply's final numeric answer: after its last answer phrase, else its last number."""
    text = _ascii_digits(reply)
    phrases = list(_ANSWER.finditer(text))
    if phrases:
        after = parse_number(text[phrases[-1].end() :], language)
        if after is not None:
            return after
    numbers = [_to_number(m.group(0), language) for m in _NUMBER.finditer(text)]
    numbers = [n for n in numbers if n is not None]
    return numbers[-1] if numbers else None


def is_match(predicted: float | None, gold: float | None) -> bool:
    """Numeric equality (to 1e-6), never for a missing number."""
    return predicted is not None and gold is not None and abs(predicted - gold) < 1e-6


def mgsm_metrics(records: Sequence[dict[str, Any]]) -> list[Metric]:
    """Exact-match accuracy overall (`accuracy`) and per language (`accuracy.LANG`)."""
    metrics = [mean_with_stderr("accuracy", [float(r["correct"]) for r in records])]
    for language in sorted({r["language"] for r in records}):
        scores = [float(r["correct"]) for r in records if r["language"] == language]
        metrics.append(mean_with_stderr(f"accuracy.{language}", scores))
    return metrics


class MGSMSuite:
    """MGSM exact numeric match per language.

    Args:
        max_tokens: Reply length limit (default 384: room for the reasoning).
        languages: MGSM languages to score (default `DEFAULT_LANGUAGES`).
        data_dir: The evaluation data folder (default: `ASSAY_EVAL_DATA` or ../shared/data).
        split: `test` (200 problems per language) or `dev` (the other 50, the same in every
            language, for choices such as merge weights; eval_sets/splits/mgsm_dev.json).

    Raises:
        EvalError: An unknown language or split.
    """

    name = "mgsm"

    def __init__(
        self,
        *,
        max_tokens: int | None = None,
        languages: Sequence[str] | None = None,
        data_dir: Path | None = None,
        split: str = "test",
    ) -> None:
        if split not in SPLIT_NAMES:
            raise EvalError(f"mgsm: no split {split!r}; splits: {', '.join(SPLIT_NAMES)}")
        self.split = split
        self.max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        self.languages = tuple(languages or DEFAULT_LANGUAGES)
        unknown = [language for language in self.languages if language not in INSTRUCTIONS]
        if unknown:
            raise EvalError(
                f"MGSM has no language {', '.join(map(repr, unknown))}; it has {', '.join(INSTRUCTIONS)}"
            )
        self.data_dir = data_dir

    @staticmethod
    def prompt(question: str, language: str) -> str:
        """The user turn for a problem: the question, then the instruction in its language."""
        return f"{question}\n\n{INSTRUCTIONS[language]}"

    def run(self, generator: GeneratorProtocol, *, limit: int | None = None) -> SuiteResult:
        """Generate greedily (the first `limit` problems, round-robin over languages) and score."""
        started = time.monotonic()
        loaded = load_mgsm(self.languages, split=self.split, data_dir=self.data_dir)
        items = interleave(loaded, lambda item: item.language, limit)
        conversations = [user_turn(self.prompt(item.question, item.language)) for item in items]
        outcomes = generator.complete(conversations, max_tokens=self.max_tokens)
        records = []
        for item, outcome in zip(items, outcomes, strict=True):
            reply, error = first_reply(outcome)
            predicted = extract_answer(reply, item.language)
            gold = parse_number(item.answer, item.language)
            records.append(
                {
                    "id": item.id,
                    "language": item.language,
                    "response": reply,
                    "error": error,
                    "answer": item.answer,
                    "predicted": predicted,
                    "correct": is_match(predicted, gold),
                }
            )
        return SuiteResult(
            suite=self.name,
            eval_set=identity("mgsm", split=self.split, data_dir=self.data_dir),
            metrics=mgsm_metrics(records),
            items=records,
            wall_s=time.monotonic() - started,
            settings=sampling_settings(
                self.max_tokens, limit, languages=list(self.languages), split=self.split
            ),
        )
