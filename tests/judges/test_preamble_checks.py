"""Preamble verifiers: IFEval checks, the language check and the no-Markdown check."""

import pytest

from judges.preambles import check_kind, has_markdown, verify_preamble


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        ({"language": "fr"}, "Bonjour, voici une réponse écrite entièrement en français.",
         "Hello, this is an answer written entirely in English."),
        ({"language": "de"}, "Das ist eine Antwort, die vollständig auf Deutsch geschrieben ist.",
         "Esta es una respuesta escrita completamente en español."),
        ({"instruction_id": "detectable_format:json_format", "kwargs": {}}, '{"answer": 42}',
         "The answer is 42."),
        ({"instruction_id": "keywords:forbidden_words", "kwargs": {"forbidden_words": ["very"]}},
         "It is quite good.", "It is very good."),
        ({"format": "no_markdown"}, "Plain prose with no structure at all.", "# Title\n\n- a bullet"),
    ],
)  # fmt: skip
def test_verifiers_tell_a_following_reply_from_a_violating_one(check: dict, good: str, bad: str) -> None:
    assert verify_preamble(good, check) is True
    assert verify_preamble(bad, check) is False


def test_markdown_detection_covers_the_common_forms() -> None:
    for text in [
        "**bold** here",
        "1. first\n2. second",
        "| a | b |",
        "```python\nx\n```",
        "[link](http://x)",
    ]:
        assert has_markdown(text), text
    assert not has_markdown("A sentence with 3 numbers, 4.5 and a dash - inside.")


def test_malformed_checks_are_errors() -> None:
    with pytest.raises(ValueError, match="expected `instruction_id`"):
        check_kind({"format": "haiku"})
