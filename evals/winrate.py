"""Win rate of model A over a reference model B by a reward model, raw and length-controlled.

Both models answer the same held-out prompts; the reward model scores each reply; A wins a
prompt when its reply gets the higher reward, ties (|r_A - r_B| <= `tie_tolerance`) count half.
The win rate is the mean of those 1 / 0.5 / 0 scores with its standard error over prompts.

A reward model that likes long replies makes a verbose model look better than it is, so the
length-controlled win rate asks what A's win rate would be at equal length: a logistic
regression of the outcome on the normalised length difference (characters of A's reply minus
B's, over its standard deviation), whose intercept gives the win probability at zero length
difference. This is the idea of AlpacaEval's length-controlled win rate (Y. Dubois et al. 2024,
"Length-Controlled AlpacaEval", arXiv 2404.04475), which fits such a GLM and reports the
prediction with the length term set to zero; the fit itself is the one `assay judge winrate`
uses for LLM judges (`judges.llm_judge.length_controlled_win_rate`), so both arbiters report
the same quantity. Its standard error is a seeded bootstrap over prompts (refit per resample).

    report = reward_win_rate(ours, reference, prompts, RewardScorer(path))
    report.win_rate, report.stderr, report.length_controlled
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from evals.base import Conversation, EvalError, Generator, Metric, mean_with_stderr
from judges.llm_judge import length_controlled_win_rate


class Scorer(Protocol):
    """A reward model as the win rate sees it (`reward_model.score.RewardScorer` is one)."""

    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """One reward per (prompt, completion)."""
        ...


@dataclass
class WinRateReport:
    """A over B on `n` prompts: raw and length-controlled win rates with their standard errors."""

    win_rate: float
    stderr: float
    n: int
    wins: int
    ties: int
    losses: int
    length_controlled: float
    length_controlled_stderr: float
    mean_length_a: float
    mean_length_b: float
    length_unit: str = "characters"
    failed: int = 0  # prompts left out because a model's generation failed
    items: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, *, with_items: bool = False) -> dict[str, Any]:
        """JSON-ready form (per-prompt records only when asked)."""
        out = asdict(self)
        if not with_items:
            out.pop("items")
        return out

    def metrics(self) -> list[Metric]:
        """`win_rate` and `win_rate_lc` as Metrics, for a SuiteResult."""
        return [
            Metric("win_rate", self.win_rate, self.stderr, self.n),
            Metric("win_rate_lc", self.length_controlled, self.length_controlled_stderr, self.n),
        ]


def outcome(reward_a: float, reward_b: float, tie_tolerance: float = 0.0) -> str:
    """ "a", "b" or "tie" for one prompt."""
    if abs(reward_a - reward_b) <= tie_tolerance:
        return "tie"
    return "a" if reward_a > reward_b else "b"


def pairwise_win_rate(
    rewards_a: Sequence[float],
    rewards_b: Sequence[float],
    lengths_a: Sequence[int],
    lengths_b: Sequence[int],
    *,
    tie_tolerance: float = 0.0,
    resamples: int = 500,
    seed: int = 0,
) -> WinRateReport:
    """Win rate of A over B from the rewards of their replies to the same prompts.

    Args:
        rewards_a: Reward of A's reply to each prompt.
        rewards_b: Reward of B's reply to the same prompts.
        lengths_a: Length of A's replies in characters.
        lengths_b: Length of B's replies in characters.
        tie_tolerance: Reward differences up to this are ties (count half).
        resamples: Bootstrap resamples for the length-controlled standard error.
        seed: Seed of the bootstrap.

    Raises:
        EvalError: No prompts, or sequences of different lengths.
    """
    import numpy as np

    n = len(rewards_a)
    if n == 0:
        raise EvalError("no prompts to compute a win rate from")
    if not (len(rewards_b) == len(lengths_a) == len(lengths_b) == n):
        raise EvalError("rewards and lengths of both models must cover the same prompts")
    outcomes = [outcome(a, b, tie_tolerance) for a, b in zip(rewards_a, rewards_b, strict=True)]
    raw = mean_with_stderr("win_rate", [{"a": 1.0, "tie": 0.5, "b": 0.0}[o] for o in outcomes])
    controlled = length_controlled_win_rate(outcomes, lengths_a, lengths_b)
    spread = math.nan
    if n >= 2 and resamples > 0:
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n, size=(resamples, n))
        values = [
            length_controlled_win_rate(
                [outcomes[i] for i in draw], [lengths_a[i] for i in draw], [lengths_b[i] for i in draw]
            )
            for draw in draws
        ]
        spread = float(np.std(values, ddof=1))
    return WinRateReport(
        win_rate=raw.value,
        stderr=raw.stderr,
        n=n,
        wins=outcomes.count("a"),
        ties=outcomes.count("tie"),
        losses=outcomes.count("b"),
        length_controlled=controlled,
        length_controlled_stderr=spread,
        mean_length_a=sum(lengths_a) / n,
        mean_length_b=sum(lengths_b) / n,
    )


def reward_win_rate(
    generator_a: Generator,
    generator_b: Generator,
    prompts: Sequence[Conversation],
    scorer: Scorer,
    *,
    max_tokens: int = 512,
    seed: int = 0,
    tie_tolerance: float = 0.0,
) -> WinRateReport:
    """Generate both models' greedy replies to `prompts`, score them, and compute A's win rate.

    A prompt for which either model's generation failed is left out (`failed` counts them): the
    win rate compares replies, and a failure is the engine's, not a reply.

    Args:
        generator_a: The model under evaluation.
        generator_b: The reference model.
        prompts: Held-out conversations (never training data).
        scorer: The reward model; check it first with `reward_model.eval.trust_report`.
        max_tokens: Reply length limit of both models.
        seed: Generation seed.
        tie_tolerance: Reward differences up to this are ties.
    """
    replies_a = generator_a.complete(prompts, n=1, temperature=0.0, max_tokens=max_tokens, seed=seed)
    replies_b = generator_b.complete(prompts, n=1, temperature=0.0, max_tokens=max_tokens, seed=seed)
    kept = [
        (index, a[0], b[0])
        for index, (a, b) in enumerate(zip(replies_a, replies_b, strict=True))
        if not isinstance(a, Exception) and not isinstance(b, Exception)
    ]
    if not kept:
        raise EvalError(f"every one of {len(prompts)} prompts failed to generate for one model or both")
    conversations = [list(prompts[index]) for index, _, _ in kept]
    rewards_a = scorer.score(conversations, [a for _, a, _ in kept])
    rewards_b = scorer.score(conversations, [b for _, _, b in kept])
    report = pairwise_win_rate(
        rewards_a,
        rewards_b,
        [len(a) for _, a, _ in kept],
        [len(b) for _, _, b in kept],
        tie_tolerance=tie_tolerance,
    )
    report.failed = len(prompts) - len(kept)
    report.items = [
        {"index": index, "reply_a": a, "reply_b": b, "reward_a": ra, "reward_b": rb,
         "outcome": outcome(ra, rb, tie_tolerance)}
        for (index, a, b), ra, rb in zip(kept, rewards_a, rewards_b, strict=True)
    ]  # fmt: skip
    return report
