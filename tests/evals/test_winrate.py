"""Win rate by a reward model: ties count half, the standard error is over prompts, and the
length-controlled win rate removes a win that comes from length alone."""

from collections.abc import Sequence

import pytest

from evals.base import EvalError, Generator
from evals.winrate import Scorer, pairwise_win_rate, reward_win_rate


def test_ties_count_half_and_the_stderr_is_over_prompts() -> None:
    report = pairwise_win_rate([1.0, 2.0, 3.0, 0.0], [0.0, 2.0, 4.0, -1.0], [5, 5, 5, 5], [5, 5, 5, 5])
    assert (report.wins, report.ties, report.losses, report.n) == (2, 1, 1, 4)
    assert report.win_rate == 0.625
    scores = [1.0, 0.5, 0.0, 1.0]
    variance = sum((s - 0.625) ** 2 for s in scores) / 3
    assert report.stderr == pytest.approx((variance / 4) ** 0.5)
    tolerant = pairwise_win_rate([1.0, 2.0], [0.9, 2.5], [1, 1], [1, 1], tie_tolerance=0.2)
    assert (tolerant.wins, tolerant.ties, tolerant.losses) == (0, 1, 1)


def test_a_win_that_comes_from_length_alone_is_controlled_away() -> None:
    # A is usually longer, and wins exactly when it is longer: no better at equal length.
    differences = [100 + d for d in range(-150, 151, 10)]
    rewards_a = [1.0 if d > 0 else 0.0 for d in differences]
    lengths_b = [500] * len(differences)
    lengths_a = [500 + d for d in differences]
    verbose = pairwise_win_rate(rewards_a, [0.5] * len(differences), lengths_a, lengths_b)
    assert verbose.win_rate > 0.8
    assert abs(verbose.length_controlled - 0.5) < 0.1
    assert verbose.length_controlled_stderr > 0
    assert verbose.mean_length_a == pytest.approx(600) and verbose.length_unit == "characters"

    # B wins a third of the prompts whatever the lengths: controlling for length changes little.
    rewards_a = [0.0 if i % 3 == 0 else 1.0 for i in range(len(differences))]
    better = pairwise_win_rate(rewards_a, [0.5] * len(differences), lengths_a, lengths_b)
    assert better.length_controlled == pytest.approx(better.win_rate, abs=0.08)
    assert better.metrics()[1].name == "win_rate_lc" and better.metrics()[1].n == len(differences)


def test_bad_input_is_refused() -> None:
    with pytest.raises(EvalError, match="no prompts"):
        pairwise_win_rate([], [], [], [])
    with pytest.raises(EvalError, match="same prompts"):
        pairwise_win_rate([1.0], [1.0, 2.0], [1], [1])


class CountsGood:
    """A stand-in reward model: the reward is how often a reply says "good"."""

    def score(self, prompts: Sequence, completions: Sequence) -> list[float]:
        assert all(isinstance(p, list) for p in prompts)
        return [float(c.count("good")) for c in completions]


def test_reward_win_rate_generates_scores_and_leaves_failed_prompts_out(scripted: type) -> None:
    prompts = [[{"role": "user", "content": q}] for q in ("q1", "q2", "q3", "q4")]
    ours_replies = {"q1": "good good", "q2": "good", "q3": "meh", "q4": "good"}
    theirs_replies: dict[str, str | Exception] = {
        "q1": "good",
        "q2": "good",
        "q3": "good",
        "q4": RuntimeError("x"),
    }
    ours: Generator = scripted(ours_replies.__getitem__)
    theirs: Generator = scripted(theirs_replies.__getitem__)
    scorer: Scorer = CountsGood()
    report = reward_win_rate(ours, theirs, prompts, scorer)
    assert (report.wins, report.ties, report.losses, report.failed) == (1, 1, 1, 1)
    assert report.win_rate == 0.5 and report.n == 3
    assert [item["outcome"] for item in report.items] == ["a", "tie", "b"]
    assert "items" not in report.as_dict() and len(report.as_dict(with_items=True)["items"]) == 3
