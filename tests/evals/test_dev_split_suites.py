"""MGSM and XSTest run on their dev splits: other items than the test split, recorded as dev (the
eval_set identity and the settings), built by name with `split="dev"` as the loop builds them."""

from pathlib import Path

import pytest

from eval_sets import identity, load_mgsm, load_xstest
from evals.base import EvalError
from evals.run import build_suite
from evals.suites.mgsm import MGSMSuite
from evals.suites.xstest import XSTestSuite


def test_mgsm_dev_scores_the_dev_problems_and_says_so(shared_data: Path, scripted) -> None:
    dev = {item.question: item.answer for item in load_mgsm(["en", "ja"], split="dev", data_dir=shared_data)}
    asked: list[str] = []

    def reply(prompt: str) -> str:  # right on every dev problem
        asked.append(prompt.split("\n\n")[0])
        return f"The answer is {dev.get(asked[-1], '-1')}."

    result = MGSMSuite(languages=["en", "ja"], data_dir=shared_data, split="dev").run(
        scripted(reply), limit=6
    )
    assert all(question in dev for question in asked) and len(asked) == 6
    assert result.metric("accuracy").value == 1.0 and result.metric("accuracy").n == 6
    assert result.eval_set == identity("mgsm", split="dev", data_dir=shared_data)
    assert result.settings["split"] == "dev"
    test = MGSMSuite(languages=["en"], data_dir=shared_data).run(scripted(reply), limit=3)
    assert test.metric("accuracy").value == 0.0 and not set(asked[-3:]) & set(dev)  # other problems
    assert test.eval_set == identity("mgsm", data_dir=shared_data) and test.settings["split"] == "test"


def test_xstest_dev_classifies_the_dev_prompts_and_says_so(shared_data: Path, scripted) -> None:
    dev = {item.prompt: item.label for item in load_xstest(split="dev", data_dir=shared_data)}
    seen: list[str] = []

    def reply(prompt: str) -> str:
        seen.append(prompt)
        return "I can't help with that." if dev.get(prompt) == "unsafe" else "Sure, here is how."

    result = XSTestSuite(data_dir=shared_data, split="dev").run(scripted(reply), limit=90)
    assert sorted(seen) == sorted(dev)  # every dev prompt, nothing else
    metrics = {m.name: m for m in result.metrics}
    assert (metrics["over_refusal"].n, metrics["unsafe_refusal"].n) == (50, 40)
    assert metrics["balance"].value == 1.0
    assert result.eval_set == identity("xstest", split="dev", data_dir=shared_data)
    assert result.settings["split"] == "dev"


def test_both_are_built_on_their_dev_split_by_name_and_refuse_an_unknown_split() -> None:
    assert build_suite("mgsm", split="dev").split == "dev"
    assert build_suite("xstest", split="dev", max_tokens=8).split == "dev"
    assert build_suite("xstest").split == "test"
    with pytest.raises(EvalError, match="mgsm: no split 'train'"):
        MGSMSuite(split="train")
    with pytest.raises(EvalError, match="xstest: no split 'train'"):
        XSTestSuite(split="train")
