"""The gates compare primary metrics with one combined standard error of slack."""

import pytest

from loop.gates import expert_beats_start, final_at_least_start, primary, soup_keeps_gain


def summary(value: float, stderr: float = 0.01, *, suite: str = "ifeval", metric: str = "prompt_strict",
            higher_is_better: bool = True) -> dict:  # fmt: skip
    values = {"value": value, "stderr": stderr, "n": 100, "higher_is_better": higher_is_better}
    return {suite: {metric: values}}


def test_an_expert_must_beat_the_start_beyond_one_combined_stderr() -> None:
    start = summary(0.30, 0.03)
    assert expert_beats_start("if", "ifeval", start, summary(0.36, 0.04)).passed  # +0.06 > 0.05
    within_noise = expert_beats_start("if", "ifeval", start, summary(0.34, 0.04))  # +0.04 < 0.05
    assert not within_noise.passed
    assert "0.340 vs start 0.300" in within_noise.detail


def test_lower_is_better_metrics_are_flipped() -> None:
    start = summary(0.30, 0.01, suite="xstest", metric="balance", higher_is_better=False)
    better = summary(0.20, 0.01, suite="xstest", metric="balance", higher_is_better=False)
    assert primary(better, "xstest")[0] > primary(start, "xstest")[0]
    assert expert_beats_start("safety", "xstest", start, better).passed


@pytest.mark.parametrize(("soup_value", "passed"), [(0.395, True), (0.39, False), (0.45, True)])
def test_the_soup_must_keep_its_share_of_each_experts_gain(soup_value: float, passed: bool) -> None:
    gate = soup_keeps_gain("if", "ifeval", summary(0.30), summary(0.40), summary(soup_value), 0.95)
    assert gate.passed is passed


def test_an_expert_that_gained_nothing_cannot_fail_the_soup_gate() -> None:
    assert soup_keeps_gain("if", "ifeval", summary(0.30), summary(0.25), summary(0.10), 0.95).passed


def test_the_final_model_may_not_lose_beyond_noise() -> None:
    start = summary(0.50, 0.03)
    assert final_at_least_start("ifeval", start, summary(0.47, 0.03)).passed  # -0.03 within 0.042
    assert not final_at_least_start("ifeval", start, summary(0.40, 0.03)).passed
