"""Grounding checks: lexical overlap with the fragment, title-only answers, QA parsing."""

from collections.abc import Sequence

from judges.grounding import LLMGroundingJudge, answerable_from_title, lexical_grounding, parse_qa

PASSAGE = "The lighthouse keeper, Elias Varga, rowed to the mainland every Tuesday to buy 12 candles."


def test_grounded_answers_score_high_and_invented_ones_low() -> None:
    assert lexical_grounding("Elias Varga rowed to the mainland.", PASSAGE) == 1.0
    assert lexical_grounding("He bought 12 candles every Tuesday.", PASSAGE) >= 0.75
    assert lexical_grounding("He flew a helicopter to Paris for wine.", PASSAGE) < 0.3
    assert lexical_grounding("", PASSAGE) == 0.0


def test_title_answerable_pairs_are_flagged() -> None:
    assert answerable_from_title("The Devil's Dictionary", "The Devil's Dictionary, by Ambrose Bierce")
    assert not answerable_from_title("Elias Varga", "The Lighthouse")


def test_parse_qa_in_several_languages_and_first_pair_only() -> None:
    assert parse_qa("Question: Who rowed?\nAnswer: Elias.\nQuestion: When?\nAnswer: Tuesday") == (
        "Who rowed?",
        "Elias.",
    )
    assert parse_qa("Pregunta: ¿Quién? Respuesta: Elias") == ("¿Quién?", "Elias")
    assert parse_qa("Frage: Wer? Antwort: Elias") == ("Wer?", "Elias")
    assert parse_qa("just some text") is None


class ScriptedEngine:
    """A stand-in for an LLM service (judges.llm_judge.JudgeEngine)."""

    name = "scripted"

    def __init__(self, answers: list[str | Exception]) -> None:
        self.answers = answers

    def reply(self, conversations: Sequence[list[dict[str, str]]]) -> list[str | Exception]:
        return self.answers[: len(conversations)]


def test_llm_grounding_judge_parses_verdicts() -> None:
    judge = LLMGroundingJudge(ScriptedEngine(["YES.", "no", "maybe", RuntimeError("down")]))
    assert judge.supported([PASSAGE] * 4, ["q"] * 4, ["a"] * 4) == [True, False, None, None]
