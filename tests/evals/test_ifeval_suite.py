"""IFEval scoring on fixed responses: strict vs loose, prompt vs instruction level, per language."""

from pathlib import Path

import pytest

from eval_sets import IFEvalItem
from evals.suites.ifeval import IFEvalSuite, ifeval_metrics, loose_variants, score_response


def item(ids: tuple[str, ...], kwargs: tuple[dict, ...], language: str = "en") -> IFEvalItem:
    return IFEvalItem(f"t-{language}", language, 0, "prompt", ids, kwargs)


def test_loose_forgives_a_preamble_line_and_asterisks_that_strict_counts() -> None:
    crafted = item(
        ("change_case:english_lowercase", "startend:end_checker"),
        ({}, {"end_phrase": "any other questions?"}),
    )
    # A capitalised first line breaks "all lowercase"; markdown bold breaks "end with".
    response = "Sure! Here is my answer:\nthe sea is calm tonight. **any other questions?**"
    scored = score_response(crafted, response)
    assert scored["strict"] == [False, False]
    assert scored["loose"] == [True, True]
    metrics = {m.name: m.value for m in ifeval_metrics([scored | {"language": "en"}])}
    assert metrics["prompt_strict"] == 0.0 and metrics["prompt_loose"] == 1.0
    assert metrics["instruction_strict"] == 0.0 and metrics["instruction_loose"] == 1.0


def test_loose_variants_are_the_eight_of_ifeval() -> None:
    variants = loose_variants("*a*\nb\n*c*")
    assert variants == ["*a*\nb\n*c*", "b\n*c*", "*a*\nb", "b", "a\nb\nc", "b\nc", "a\nb", "b"]


def test_an_empty_response_follows_nothing_even_a_negative_instruction() -> None:
    scored = score_response(item(("punctuation:no_comma",), ({},)), "   ")
    assert scored["strict"] == [False] and scored["loose"] == [False]


def test_unsupported_instructions_are_left_out_and_listed() -> None:
    crafted = item(("ja:detectable_format:nominal_ending", "ja:punctuation:no_comma"), ({}, {}), "ja")
    scored = score_response(crafted, "これはテストです")
    assert scored["instructions"] == ["ja:punctuation:no_comma"]
    assert scored["unsupported"] == ["ja:detectable_format:nominal_ending"]
    assert scored["strict"] == [True]


def test_prompt_level_needs_every_instruction_instruction_level_pools_them() -> None:
    records = [
        {"language": "en", "instructions": ["a", "b"], "strict": [True, False], "loose": [True, True]},
        {"language": "es", "instructions": ["c"], "strict": [True], "loose": [True]},
    ]
    metrics = {m.name: m for m in ifeval_metrics(records)}
    assert metrics["prompt_strict"].value == 0.5 and metrics["prompt_strict"].n == 2
    assert (
        metrics["instruction_strict"].value == pytest.approx(2 / 3) and metrics["instruction_strict"].n == 3
    )
    assert metrics["prompt_strict.en"].value == 0.0 and metrics["prompt_strict.es"].value == 1.0
    assert metrics["prompt_loose.en"].value == 1.0


def test_suite_scores_each_language_on_the_heldout_split(shared_data: Path, scripted) -> None:
    generator = scripted(lambda prompt: "hello world")
    result = IFEvalSuite(data_dir=shared_data, max_tokens=16).run(generator, limit=8)
    assert generator.calls == [8]  # one call with every conversation: the generator batches
    assert result.eval_set.startswith("ifeval#sha256=")
    assert {r["language"] for r in result.items} == {"en", "es", "fr", "ja"}
    names = {m.name for m in result.metrics}
    assert {"prompt_strict", "instruction_loose", "prompt_strict.es", "instruction_loose.ja"} <= names
    by_name = {m.name: m for m in result.metrics}
    expected = [all(r["strict"]) for r in result.items if r["instructions"]]
    assert by_name["prompt_strict"].value == sum(expected) / len(expected)
    assert result.settings["limit"] == 8 and result.settings["sampling"]["temperature"] == 0.0


def test_the_dev_split_is_recorded_as_dev_and_measures_other_prompts(shared_data: Path, scripted) -> None:
    test = IFEvalSuite(data_dir=shared_data, max_tokens=16).run(scripted(lambda p: "hi"), limit=4)
    dev = IFEvalSuite(data_dir=shared_data, max_tokens=16, split="dev").run(scripted(lambda p: "hi"), limit=4)
    assert dev.eval_set.startswith("ifeval:dev#sha256=") and dev.settings["split"] == "dev"
    assert not {r["id"] for r in dev.items} & {r["id"] for r in test.items}


def test_a_failed_generation_scores_zero_and_keeps_its_error(shared_data: Path, scripted) -> None:
    result = IFEvalSuite(data_dir=shared_data).run(scripted(lambda p: RuntimeError("boom")), limit=2)
    assert all(r["error"] == "RuntimeError: boom" for r in result.items)
    assert result.metric("prompt_loose").value == 0.0
