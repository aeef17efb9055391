"""LLM judges against scripted engines (a stand-in for a third-party model): position swap,
disagreement and unparseable replies as ties with the raw reply kept, panels, win rate with an
interval, length control, rubric scores."""

from collections.abc import Callable, Sequence

import pytest

from judges.llm_judge import (
    PairwiseJudge,
    RubricJudge,
    combine_orders,
    length_controlled_win_rate,
    load_template,
    panel_outcome,
    parse_pairwise,
    win_rate,
)


class ScriptedEngine:
    """Answers each conversation with `answer(user_text)`."""

    name = "scripted"

    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer
        self.calls = 0

    def reply(self, conversations: Sequence[list[dict[str, str]]]) -> list[str | Exception]:
        self.calls += 1
        return [self.answer(c[-1]["content"]) for c in conversations]


def first_reply_text(user: str) -> str:
    return user.split("[Reply A]\n")[1].split("\n\n[Reply B]")[0]


def test_parse_pairwise_takes_the_last_verdict() -> None:
    assert parse_pairwise("A is [[A]]-like but overall [[B]]") == "b"
    assert parse_pairwise("[[tie]]") == "tie" and parse_pairwise("[[C]]") == "tie"
    assert parse_pairwise("I prefer the first one") is None


def test_a_consistent_judge_wins_in_both_orders() -> None:
    longer = ScriptedEngine(lambda u: "[[A]]" if "good" in first_reply_text(u) else "[[B]]")
    verdicts = PairwiseJudge().judge(longer, [("q", "good reply", "bad"), ("q", "bad", "good reply")])
    assert [v.outcome for v in verdicts] == ["a", "b"] and all(v.consistent for v in verdicts)
    assert longer.calls == 1  # both orders of every item in one engine call


def test_position_bias_becomes_a_tie() -> None:
    always_first = ScriptedEngine(lambda u: "Reply A is better. [[A]]")
    (verdict,) = PairwiseJudge().judge(always_first, [("q", "x", "y")])
    assert verdict.outcome == "tie" and not verdict.consistent and verdict.parsed == ("a", "b")


def test_unparseable_reply_is_a_tie_with_raw_kept() -> None:
    verdict = combine_orders("I cannot decide.", RuntimeError("server down"))
    assert verdict.outcome == "tie" and verdict.parsed == (None, None)
    assert verdict.raw == ("I cannot decide.", "RuntimeError: server down")


def test_template_from_text_and_strict_variables() -> None:
    judge = PairwiseJudge(load_template("{{ prompt }}|{{ response_a }}|{{ response_b }}"), system="Judge.")
    assert judge.conversation("p", "a", "b") == [{"role": "system", "content": "Judge."},
                                                 {"role": "user", "content": "p|a|b"}]  # fmt: skip
    with pytest.raises(Exception, match="undefined"):
        PairwiseJudge(load_template("{{ missing }}")).conversation("p", "a", "b")


def test_panel_majority_and_mean() -> None:
    a, b, tie = (
        combine_orders(x, y) for x, y in (("[[A]]", "[[B]]"), ("[[B]]", "[[A]]"), ("[[A]]", "[[A]]"))
    )
    assert panel_outcome([a, a, b]) == "a"
    assert panel_outcome([a, b, tie]) == "tie"
    assert panel_outcome([a, tie, tie]) == "tie"  # majority: tie has two votes
    assert panel_outcome([a, tie, tie], "mean") == "a"  # mean 2/3 > 0.5


def test_win_rate_and_interval() -> None:
    result = win_rate(["a"] * 6 + ["tie"] * 2 + ["b"] * 2)
    assert result.rate == pytest.approx(0.7) and (result.wins, result.ties, result.losses) == (6, 2, 2)
    assert result.low < 0.7 < result.high and 0.0 <= result.low and result.high <= 1.0
    assert win_rate(["a"] * 6 + ["tie"] * 2 + ["b"] * 2) == result  # seeded: repeatable
    with pytest.raises(ValueError):
        win_rate([])


def test_length_control_removes_a_pure_length_preference() -> None:
    # A wins exactly when its reply is longer, and is longer half the time: no skill beyond length.
    lengths_a = [100, 20] * 4
    lengths_b = [20, 100] * 4
    outcomes = ["a" if la > lb else "b" for la, lb in zip(lengths_a, lengths_b, strict=True)]
    assert win_rate(outcomes).rate == 0.5
    assert length_controlled_win_rate(outcomes, lengths_a, lengths_b) == pytest.approx(0.5, abs=0.05)
    # Equal lengths: nothing to control for, the rate is the raw one.
    always = ["a"] * 6 + ["b"] * 2
    assert length_controlled_win_rate(always, [10] * 8, [10] * 8) == pytest.approx(0.75, abs=1e-3)


def test_rubric_judge_parses_scores_in_range() -> None:
    engine = ScriptedEngine(lambda u: "Fine. Score: 7" if "ok" in u else "Score: 42")
    judge = RubricJudge("Is it correct?", 1, 10)
    good, out_of_range = judge.judge(engine, [("q", "ok reply"), ("q", "other")])
    assert good.score == 7.0 and out_of_range.score is None and out_of_range.raw == "Score: 42"
    assert judge.parse("no score here").score is None
