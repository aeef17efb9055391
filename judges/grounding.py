"""Grounding checks for question-answer pairs drawn from a document (Command A report, 3.3.6).

`lexical_grounding` is the share of the answer's content words (lower-cased, stop words and
short words dropped, cut to their first `stem` letters) that occur in the passage: an answer
copied or paraphrased closely from its fragment scores near 1, an invented one near 0.
`answerable_from_title` flags a pair whose answer's content words all occur in the document's
title (the question needs no reading). `parse_qa` reads a generated "Question: ... Answer: ..."
pair in English, French, Spanish or German.

An LLM judge is optional: `LLMGroundingJudge` takes any `JudgeEngine` (judges.llm_judge) and
answers yes/no per pair (None where the reply names no verdict or the call failed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from judges.llm_judge import JudgeEngine

_WORD = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset(
    "the a an and or of to in on for with by at from as is are was were be been being it its this that "
    "these those what which who whom whose how why when where can could would should will may might must "
    "do does did have has had not no yes you your he she his her him they them their we our us i me my "
    "there here than then so if but also into about over under after before because very more most "
    "le la les un une des du de et ou en au aux pour par sur dans est sont que qui il elle ils "
    "el los las unos unas del y o por para con es son que se lo der die das ein eine und oder zu mit ist "
    "sind".split()
)
_QA = re.compile(
    r"(?:question|frage|pregunta)\s*[:：]\s*(?P<q>.+?)\s*(?:answer|réponse|reponse|antwort|respuesta)\s*[:：]\s*(?P<a>.+)",
    re.IGNORECASE | re.DOTALL,
)


def content_words(text: str, stem: int = 6) -> list[str]:
    """Lower-cased words of `text` without stop words, words under 3 letters or digits-only
    words (numbers count: they are kept whole), cut to `stem` letters."""
    out = []
    for word in (w.lower() for w in _WORD.findall(text)):
        if word.isdigit():
            out.append(word)
        elif len(word) >= 3 and word not in STOP_WORDS:
            out.append(word[:stem])
    return out


def lexical_grounding(answer: str, passage: str, stem: int = 6) -> float:
    """Share of the answer's distinct content words found in the passage (0.0 for none)."""
    words = set(content_words(answer, stem))
    if not words:
        return 0.0
    return len(words & set(content_words(passage, stem))) / len(words)


def answerable_from_title(answer: str, title: str, stem: int = 6) -> bool:
    """True when every content word of the answer is in the title."""
    words = set(content_words(answer, stem))
    return bool(words) and words <= set(content_words(title, stem))


def parse_qa(text: str) -> tuple[str, str] | None:
    """The (question, answer) of a generated pair, or None when it has no such shape."""
    match = _QA.search(text or "")
    if not match:
        return None
    question, answer = match.group("q").strip(), match.group("a").strip()
    # A model that goes on to a second pair: keep the first answer only.
    answer = re.split(r"\n\s*(?:question|frage|pregunta)\s*[:：]", answer, flags=re.IGNORECASE)[0].strip()
    return (question, answer) if question and answer else None


JUDGE_PROMPT = (
    "Passage:\n{passage}\n\nQuestion: {question}\nAnswer: {answer}\n\n"
    "Is the answer correct and fully supported by the passage? Reply YES or NO.\nVerdict:"
)
_VERDICT = re.compile(r"\b(YES|NO)\b", re.IGNORECASE)


class LLMGroundingJudge:
    """Asks an LLM whether each answer is supported by its passage."""

    def __init__(self, engine: JudgeEngine, prompt: str = JUDGE_PROMPT) -> None:
        self.engine, self.prompt = engine, prompt

    def supported(
        self, passages: Sequence[str], questions: Sequence[str], answers: Sequence[str]
    ) -> list[bool | None]:
        """True/False per pair, None where the judge's reply names no verdict."""
        prompts = [
            self.prompt.format(passage=p, question=q, answer=a)
            for p, q, a in zip(passages, questions, answers, strict=True)
        ]
        replies = self.engine.reply([[{"role": "user", "content": p}] for p in prompts])
        if len(replies) != len(prompts):
            raise ValueError(f"the judge engine gave {len(replies)} answers for {len(prompts)} prompts")
        out: list[bool | None] = []
        for reply in replies:
            match = _VERDICT.search(reply) if isinstance(reply, str) else None
            out.append(match.group(1).upper() == "YES" if match else None)
        return out
