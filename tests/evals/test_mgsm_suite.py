"""MGSM: the answer extractor on real SmolLM2 outputs and on the number formats models write."""

import json
from pathlib import Path

import pytest

from eval_sets import load_mgsm
from evals.base import EvalError
from evals.suites.mgsm import INSTRUCTIONS, MGSMSuite, extract_answer, parse_number

REAL = json.loads((Path(__file__).parent / "data" / "mgsm_smollm2_outputs.json").read_text())["outputs"]


@pytest.mark.parametrize("output", REAL, ids=[o["id"] for o in REAL])
def test_extractor_on_real_smollm2_outputs(output: dict) -> None:
    # Repetitive replies, an echoed "The answer is N." with no number, numbers inside Japanese.
    assert extract_answer(output["response"], output["language"]) == output["expected"]


@pytest.mark.parametrize(
    ("reply", "language", "expected"),
    [
        ("She sells 9 eggs at $2 each, so 9 * 2 = $18.", "en", 18),
        ("The answer is 18. That is 2 more than 16.", "en", 18),  # the phrase wins over the last number
        ("The answer is: **$1,234.50**", "en", 1234.5),
        ("Total: 114,200 dollars", "en", 114200),
        ("Die Antwort ist 2.125.", "de", 2125),  # a German thousands point
        ("It costs 2.125 dollars", "en", 2.125),  # an English decimal point
        ("La réponse est 1\u202f000 €.", "fr", 1000),  # a narrow no-break space groups thousands
        ("La respuesta es 12,5", "es", 12.5),  # a decimal comma
        ("答えは１８です。", "ja", 18),  # full-width digits
        ("答案是：３６。", "zh", 36),
        ("Ответ: 42.", "ru", 42),
        ("উত্তর হল ১৮।", "bn", 18),  # Bengali digits
        ("From 3-4 hours, the answer is 7.", "en", 7),
        ("I don't know.", "en", None),
    ],
)
def test_extractor_on_number_formats(reply: str, language: str, expected: float | None) -> None:
    assert extract_answer(reply, language) == expected


def test_gold_answers_all_parse(shared_data: Path) -> None:
    items = load_mgsm(data_dir=shared_data)
    assert all(parse_number(item.answer, item.language) is not None for item in items)
    assert parse_number("2,125", "de") == 2125  # MGSM writes English separators in every language


def test_suite_scores_per_language_and_asks_in_the_problems_language(shared_data: Path, scripted) -> None:
    english = load_mgsm(["en"], data_dir=shared_data)  # the test split: problem 0 is a dev problem
    first, second = (item.id.rpartition("-")[2] for item in english[:2])
    prompts: list[str] = []

    def reply(prompt: str) -> str:  # right on the first English problem only
        prompts.append(prompt)
        right = prompt.split("\n\n")[0] == english[0].question
        return f"The answer is {english[0].answer}." if right else "The answer is 0"

    result = MGSMSuite(languages=["en", "ja"], data_dir=shared_data).run(scripted(reply), limit=4)
    expected = [f"mgsm-{lang}-{n}" for n in (first, second) for lang in ("en", "ja")]
    assert [r["id"] for r in result.items] == expected and first != "0"
    assert prompts[1].endswith(INSTRUCTIONS["ja"])
    metrics = {m.name: m for m in result.metrics}
    assert metrics["accuracy"].value == 0.25 and metrics["accuracy"].n == 4
    assert metrics["accuracy.en"].value == 0.5 and metrics["accuracy.ja"].value == 0.0
    assert result.settings["languages"] == ["en", "ja"]


def test_the_default_languages_and_an_unknown_one() -> None:
    assert MGSMSuite().languages == ("en", "es", "fr", "ja", "de", "zh", "ru")
    with pytest.raises(EvalError, match="MGSM has no language 'xx'"):
        MGSMSuite(languages=["xx"])
