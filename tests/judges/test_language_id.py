"""Language identification of replies: code and quotes ignored, too-short replies not judged,
and the chosen library's accuracy on the real m-IFEval prompts."""

import json
from pathlib import Path

import pytest

from judges.language_id import LanguageIdentifier, check_language, strip_code_and_quotes

FRENCH = "Voici ma réponse : il faut arroser les plantes le matin, avant la chaleur du jour."


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


def test_code_blocks_inline_code_and_quotes_are_stripped() -> None:
    text = 'Texte ```python\nprint("hello world")\n``` puis `x = 1` et "a quoted English sentence".\n> quoted'
    assert strip_code_and_quotes(text) == "Texte puis et ."


def test_french_reply_quoting_english_and_code_is_french(identifier: LanguageIdentifier) -> None:
    reply = (
        f"{FRENCH}\n```python\ndef water_the_plants(every_morning):\n    return 'plants watered'\n```\n"
        '"This English sentence is only a quotation and should not count at all."'
    )
    assert check_language(reply, "fr", identifier).ok
    assert not check_language(reply, "en", identifier).ok


def test_wrong_language_is_caught(identifier: LanguageIdentifier) -> None:
    check = check_language(
        "The plants need water every morning before the heat of the day.", "fr", identifier
    )
    assert not check.ok and check.detected == "en" and not check.undetermined
    japanese = check_language("植物には毎朝、暑くなる前に水をあげてください。", "ja", identifier)
    assert japanese.ok and japanese.detected == "ja"


def test_code_only_or_tiny_reply_is_not_judged(identifier: LanguageIdentifier) -> None:
    check = check_language("```python\nprint('only code here, in English words')\n```\n42", "ja", identifier)
    assert check.ok and check.undetermined and check.detected is None


def test_accuracy_on_m_ifeval_prompts_by_language(shared_data: Path, identifier: LanguageIdentifier) -> None:
    for language in ("en", "es", "fr", "ja"):
        path = shared_data / "ifeval" / f"m-ifeval_{language}_input_data.jsonl"
        prompts = [json.loads(line)["prompt"] for line in path.read_text().splitlines()]
        right = sum(check_language(p, language, identifier).ok for p in prompts)
        assert right / len(prompts) >= 0.99, f"{language}: {right}/{len(prompts)}"
