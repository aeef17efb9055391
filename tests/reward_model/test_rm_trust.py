"""The trust check of a reward model: its accuracy against "longer wins" / "shorter wins" on the same
pairs and a length-controlled accuracy, with a verdict that flips where the numbers say so."""

import math

import pytest

from reward_model.eval import reply_length, trust_report

N = 40
PREFERRED_LONGER = 24  # the preferred reply is the longer one in 24 of 40 pairs: longer-wins 60 %


def pairs(right: list[bool]) -> tuple[list[float], list[float], list[float], list[int], list[int]]:
    """Pairs whose chosen reply is preferred (label 1), longer in the first 24; the reward ranks
    pair i right when right[i]."""
    chosen = [1.0 if r else -1.0 for r in right]
    rejected = [0.0] * len(right)
    labels = [1.0] * len(right)
    chosen_lengths = [100 if i < PREFERRED_LONGER else 10 for i in range(len(right))]
    rejected_lengths = [50] * len(right)
    return chosen, rejected, labels, chosen_lengths, rejected_lengths


def proportion_stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / (n - 1))


def test_the_verdict_flips_at_the_best_baseline_plus_one_stderr() -> None:
    # 30 of 40 right (75 %, stderr 6.9): above 60 % + 6.9 -> trusted.
    good = trust_report(*pairs([i % 4 != 0 for i in range(N)]))
    assert good.accuracy.value == 0.75 and good.accuracy.n == N
    assert good.accuracy.stderr == pytest.approx(proportion_stderr(0.75, N))
    assert good.longer_wins.value == 0.6 and good.shorter_wins.value == pytest.approx(0.4)
    assert good.best_baseline == "longer-wins" and good.trusted
    assert good.verdict_line().startswith("reward model trusted: 75.0 % ± 6.9 vs longer-wins 60.0 %")

    # 26 of 40 right (65 %, stderr 7.6): above the baseline, but not by a standard error.
    weak = trust_report(*pairs([i < 26 for i in range(N)]))
    assert weak.accuracy.value == 0.65 and not weak.trusted
    assert weak.verdict_line().startswith("reward model NOT trusted: 65.0 % ± 7.6 vs longer-wins 60.0 %")


def test_a_reward_that_only_counts_length_scores_half_length_controlled() -> None:
    # Right exactly where the preferred reply is the longer one: as good as longer-wins, no better.
    report = trust_report(*pairs([i < PREFERRED_LONGER for i in range(N)]))
    assert report.accuracy.value == report.longer_wins.value == 0.6
    assert report.preferred_longer.value == 1.0 and report.preferred_shorter.value == 0.0
    assert report.length_controlled.value == 0.5 and report.length_controlled.n == N
    assert not report.trusted
    # A model right on 3/4 of each stratum: length-controlled 75 %, stderr from both strata.
    right = [i % 4 != 0 for i in range(PREFERRED_LONGER)] + [i % 4 != 0 for i in range(N - PREFERRED_LONGER)]
    mixed = trust_report(*pairs(right))
    assert mixed.length_controlled.value == pytest.approx(0.75)
    se_long, se_short = proportion_stderr(0.75, 24), proportion_stderr(0.75, 16)
    assert mixed.length_controlled.stderr == pytest.approx(math.hypot(se_long, se_short) / 2)


def test_shorter_wins_is_the_baseline_where_shorter_replies_are_preferred() -> None:
    chosen, rejected, labels, long_chosen, long_rejected = pairs([True] * N)
    # Swap the lengths: now the preferred reply is the shorter one in 24 pairs.
    report = trust_report(chosen, rejected, labels, long_rejected, long_chosen)
    assert report.shorter_wins.value == 0.6 and report.best_baseline == "shorter-wins"
    assert report.accuracy.value == 1.0 and report.trusted  # stderr 0: 100 % > 60 %


def test_pair_order_ties_and_equal_lengths() -> None:
    base = trust_report(*pairs([i % 4 != 0 for i in range(N)]))
    chosen, rejected, labels, len_chosen, len_rejected = pairs([i % 4 != 0 for i in range(N)])
    # The same pairs stored the other way round (label 0.001: the second reply is preferred).
    flipped = trust_report(rejected, chosen, [0.001] * N, len_rejected, len_chosen)
    assert flipped.as_dict() == base.as_dict()
    # Tied labels are left out; pairs of equal length count half for the baselines.
    tied = trust_report(
        [1.0, 1.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.5], [10, 10, 30, 99], [10, 20, 20, 1]
    )
    assert tied.accuracy.n == 3 and tied.longer_wins.value == pytest.approx((0.5 + 0 + 1) / 3)
    assert tied.preferred_longer.n == 1 and tied.preferred_shorter.n == 1  # the equal pair in neither
    assert tied.length_unit == "characters"


def test_reply_length_counts_characters_of_the_text() -> None:
    assert reply_length("héllo") == 5
    turns = [{"role": "assistant", "content": "abc"}, {"role": "assistant", "content": "de"}]
    assert reply_length(turns) == 5


def test_pairs_all_on_one_side_of_length_have_no_length_controlled_accuracy() -> None:
    report = trust_report([1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [9, 8], [1, 2])  # preferred always longer
    assert report.as_dict()["length_controlled"] == {"value": None, "stderr": None, "n": 2}
    assert report.verdict_line().endswith("(n 2; length-controlled n/a)") and not report.trusted
