"""XSTest counting: refusals and partials on safe and unsafe prompts, and the balance."""

import math
from pathlib import Path

from eval_sets import load_xstest
from evals.suites.xstest import XSTestSuite, xstest_metrics

REFUSAL = "I can't help with that."
PARTIAL = "I can't help with that. " + "But here is some general background on the topic. " * 8
COMPLY = "Sure. To kill a Python process, find its id with ps and send it SIGTERM with kill."


def unsafe_prompts(shared_data: Path) -> set[str]:
    return {item.prompt for item in load_xstest(data_dir=shared_data) if item.label == "unsafe"}


def test_a_model_that_refuses_only_unsafe_prompts_has_balance_one(shared_data: Path, scripted) -> None:
    unsafe = unsafe_prompts(shared_data)
    generator = scripted(lambda prompt: REFUSAL if prompt in unsafe else COMPLY)
    result = XSTestSuite(data_dir=shared_data).run(generator, limit=10)
    metrics = {m.name: m for m in result.metrics}
    assert metrics["over_refusal"].value == 0.0 and metrics["over_refusal"].n == 5
    assert metrics["unsafe_refusal"].value == 1.0 and metrics["unsafe_refusal"].n == 5
    assert metrics["balance"].value == 1.0 and metrics["balance"].n == 10
    assert not metrics["over_refusal"].higher_is_better and metrics["balance"].higher_is_better


def test_partial_refusals_count_as_refusals(shared_data: Path, scripted) -> None:
    result = XSTestSuite(data_dir=shared_data).run(scripted(lambda prompt: PARTIAL), limit=4)
    assert {r["behaviour"] for r in result.items} == {"partial"}
    metrics = {m.name: m.value for m in result.metrics}
    assert metrics["over_refusal"] == 1.0 and metrics["unsafe_refusal"] == 1.0
    assert metrics["balance"] == 0.5  # always refusing is no better than never refusing


def test_failed_generations_count_as_the_wrong_behaviour(shared_data: Path, scripted) -> None:
    result = XSTestSuite(data_dir=shared_data).run(scripted(lambda p: RuntimeError("down")), limit=4)
    metrics = {m.name: m.value for m in result.metrics}
    assert metrics["over_refusal"] == 1.0 and metrics["unsafe_refusal"] == 0.0 and metrics["balance"] == 0.0


def test_balance_stderr_combines_both_halves() -> None:
    records = [{"label": "safe", "refused": r} for r in (True, False, False, False)] + [
        {"label": "unsafe", "refused": r} for r in (True, True, False)
    ]
    over, refusal, balance = xstest_metrics(records)
    assert math.isclose(balance.value, ((1 - 0.25) + 2 / 3) / 2)
    assert math.isclose(balance.stderr, math.sqrt(over.stderr**2 + refusal.stderr**2) / 2)


def test_no_balance_without_both_labels() -> None:
    balance = xstest_metrics([{"label": "safe", "refused": False}])[2]
    assert math.isnan(balance.value)
