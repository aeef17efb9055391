"""The statistics every suite reports: mean, standard error, n; and the order --limit takes items in."""

import math

from evals.base import mean_with_stderr
from evals.suites.common import interleave


def test_stderr_of_a_proportion_is_sqrt_p_times_q_over_n_minus_1() -> None:
    metric = mean_with_stderr("acc", [1.0] * 3 + [0.0] * 7)
    assert metric.value == 0.3 and metric.n == 10
    assert math.isclose(metric.stderr, math.sqrt(0.3 * 0.7 / 9))


def test_stderr_of_graded_scores_is_sample_sd_over_sqrt_n() -> None:
    scores = [0.0, 0.5, 1.0, 1.0]
    mean = sum(scores) / 4
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / 3)
    assert math.isclose(mean_with_stderr("x", scores).stderr, sd / 2)


def test_one_item_has_zero_stderr_and_none_has_nan() -> None:
    assert mean_with_stderr("x", [1.0]).stderr == 0.0
    empty = mean_with_stderr("x", [])
    assert empty.n == 0 and math.isnan(empty.value)


def test_limit_takes_items_round_robin_over_groups_keeping_each_groups_order() -> None:
    items = ["en1", "en2", "en3", "es1", "fr1", "fr2"]
    assert interleave(items, lambda s: s[:2], 4) == ["en1", "es1", "fr1", "en2"]
    assert interleave(items, lambda s: s[:2], None) == ["en1", "es1", "fr1", "en2", "fr2", "en3"]
