"""LLM judges: pairwise with position swap, panels, pointwise rubric scores, win rates.

A judge renders a jinja2 template into a conversation and asks any engine that satisfies
`JudgeEngine` (datagen passes its engines in, behind the LLM-call cache; this package imports no
pipeline code). A pairwise judge asks twice, with the two replies in both orders; the verdict
counts only when both orders agree, and a disagreement is a tie (position bias cancels out). A
reply that does not parse is a tie too, with the raw reply kept.

Win rate = (wins + 0.5 × ties) / n, with a bootstrap confidence interval; the length-controlled
win rate is the win probability at equal lengths from a logistic fit of the outcome on the
length difference (after AlpacaEval's length-controlled win rate, simplified to one covariate).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import jinja2

Conversation = list[dict[str, str]]
Outcome = Literal["a", "b", "tie"]

PAIRWISE_TEMPLATE = """\
Compare two replies to the same request and decide which one is better: more helpful, more \
correct, and in the language the request asks for.

[Request]
{{ prompt }}

[Reply A]
{{ response_a }}

[Reply B]
{{ response_b }}

Explain briefly, then end with exactly one verdict: [[A]] if reply A is better, [[B]] if reply B \
is better, or [[TIE]] if they are equally good."""

RUBRIC_TEMPLATE = """\
Rate the reply to the request below from {{ min_score }} to {{ max_score }} on this rubric:
{{ rubric }}

[Request]
{{ prompt }}

[Reply]
{{ response }}

Explain briefly, then end with "Score: N"."""

_PAIRWISE_VERDICT = re.compile(r"\[\[\s*(A|B|TIE|C)\s*\]\]", re.IGNORECASE)
_SCORE = re.compile(r"score\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


class JudgeEngine(Protocol):
    """What a judge needs from an engine: one reply per conversation, or the error that failed it."""

    name: str

    def reply(self, conversations: Sequence[Conversation]) -> list[str | Exception]:
        """A reply text per conversation."""


def load_template(source: str | Path) -> jinja2.Template:
    """A jinja2 template from a file path or from its text (undefined variables are errors)."""
    text = Path(source).read_text() if isinstance(source, Path) else source
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(text)


def parse_pairwise(reply: str) -> Outcome | None:
    """The last `[[A]]`, `[[B]]` or `[[TIE]]` of a reply (`[[C]]` is a tie too), or None."""
    found = _PAIRWISE_VERDICT.findall(reply or "")
    if not found:
        return None
    last = found[-1].upper()
    return "a" if last == "A" else "b" if last == "B" else "tie"


@dataclass(frozen=True)
class PairVerdict:
    """A pairwise verdict over both orders.

    Attributes:
        outcome: `a`, `b` or `tie` for the original order (a disagreement or a parse failure is a tie).
        consistent: Both orders parsed and agreed.
        parsed: The verdict of each order, in the original labelling (None: did not parse).
        raw: The judge's two replies (or errors), as they came.
    """

    outcome: Outcome
    consistent: bool
    parsed: tuple[Outcome | None, Outcome | None]
    raw: tuple[str, str]

    @property
    def score(self) -> float:
        """1 when A wins, 0.5 for a tie, 0 when B wins."""
        return {"a": 1.0, "tie": 0.5, "b": 0.0}[self.outcome]


def _swap(outcome: Outcome | None) -> Outcome | None:
    return {"a": "b", "b": "a"}.get(outcome, outcome) if outcome else None  # type: ignore[return-value]


def combine_orders(first: str | Exception, second: str | Exception) -> PairVerdict:
    """The verdict from a reply with (A, B) shown in order and one with them swapped."""
    raw = tuple(r if isinstance(r, str) else f"{type(r).__name__}: {r}" for r in (first, second))
    one = parse_pairwise(first) if isinstance(first, str) else None
    two = _swap(parse_pairwise(second)) if isinstance(second, str) else None
    consistent = one is not None and one == two
    return PairVerdict(one if consistent else "tie", consistent, (one, two), raw)  # type: ignore[arg-type]


@dataclass
class PairwiseJudge:
    """Ask an engine which of two replies is better, in both orders.

    Args:
        template: Renders `prompt`, `response_a` and `response_b` into the user turn.
        system: An optional system turn.
    """

    template: jinja2.Template = field(default_factory=lambda: load_template(PAIRWISE_TEMPLATE))
    system: str | None = None

    def conversation(self, prompt: str, response_a: str, response_b: str) -> Conversation:
        """The judge's conversation for one order."""
        user = self.template.render(prompt=prompt, response_a=response_a, response_b=response_b)
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, {"role": "user", "content": user}]

    def judge(self, engine: JudgeEngine, items: Sequence[tuple[str, str, str]]) -> list[PairVerdict]:
        """Verdicts for (prompt, reply A, reply B) items; both orders go to the engine in one call."""
        conversations = []
        for prompt, a, b in items:
            conversations += [self.conversation(prompt, a, b), self.conversation(prompt, b, a)]
        replies = engine.reply(conversations)
        return [combine_orders(replies[2 * i], replies[2 * i + 1]) for i in range(len(items))]


def panel_outcome(
    verdicts: Sequence[PairVerdict], method: Literal["majority", "mean"] = "majority"
) -> Outcome:
    """A panel's verdict on one item: the strict majority of its judges (else a tie), or the sign
    of the mean score's distance from 0.5."""
    if method == "mean":
        mean = sum(v.score for v in verdicts) / len(verdicts)
        return "a" if mean > 0.5 else "b" if mean < 0.5 else "tie"
    votes = {o: sum(v.outcome == o for v in verdicts) for o in ("a", "b", "tie")}
    top = max(votes.values())
    leaders = [o for o, count in votes.items() if count == top]
    return leaders[0] if len(leaders) == 1 else "tie"  # type: ignore[return-value]


@dataclass(frozen=True)
class WinRate:
    """(wins + 0.5 × ties) / n with a bootstrap interval."""

    rate: float
    low: float
    high: float
    n: int
    wins: int
    ties: int
    losses: int


def win_rate(
    outcomes: Sequence[Outcome], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> WinRate:
    """Win rate of A over B with a percentile-bootstrap interval (seeded, so repeatable).

    Raises:
        ValueError: no outcomes.
    """
    import numpy as np

    if not outcomes:
        raise ValueError("no verdicts to compute a win rate from")
    scores = np.array([{"a": 1.0, "tie": 0.5, "b": 0.0}[o] for o in outcomes])
    draws = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))
    means = scores[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    return WinRate(
        rate=float(scores.mean()),
        low=float(np.quantile(means, tail)),
        high=float(np.quantile(means, 1 - tail)),
        n=len(outcomes),
        wins=sum(o == "a" for o in outcomes),
        ties=sum(o == "tie" for o in outcomes),
        losses=sum(o == "b" for o in outcomes),
    )


def length_controlled_win_rate(
    outcomes: Sequence[Outcome], length_a: Sequence[int], length_b: Sequence[int]
) -> float:
    """The win probability of A at equal lengths: σ(intercept) of a logistic regression of the
    outcome (1, 0.5, 0) on the scaled length difference, fitted by Newton's method.

    The slope has an L2 penalty (`1.0`): when length alone separates the outcomes the plain fit
    has no finite optimum, and the penalty keeps it, and so the intercept, finite."""
    import numpy as np

    y = np.array([{"a": 1.0, "tie": 0.5, "b": 0.0}[o] for o in outcomes])
    diff = np.array(length_a, dtype=float) - np.array(length_b, dtype=float)
    scale = float(np.std(diff)) or 1.0
    x = np.stack([np.ones_like(diff), diff / scale], axis=1)
    beta = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ beta)))
        penalty = np.array([1e-6, 1.0])  # the intercept is (almost) free; the slope is shrunk
        gradient = x.T @ (y - p) - penalty * beta
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if float(np.abs(step).max()) < 1e-9:
            break
    return float(1 / (1 + math.exp(-beta[0])))


@dataclass(frozen=True)
class RubricVerdict:
    """A pointwise score (None when the reply did not parse or was out of range) and the raw reply."""

    score: float | None
    raw: str


@dataclass
class RubricJudge:
    """Score one reply on a rubric, from `min_score` to `max_score`."""

    rubric: str
    min_score: int = 1
    max_score: int = 10
    template: jinja2.Template = field(default_factory=lambda: load_template(RUBRIC_TEMPLATE))

    def conversation(self, prompt: str, response: str) -> Conversation:
        """The judge's conversation for one reply."""
        user = self.template.render(
            prompt=prompt,
            response=response,
            rubric=self.rubric,
            min_score=self.min_score,
            max_score=self.max_score,
        )
        return [{"role": "user", "content": user}]

    def parse(self, reply: str | Exception) -> RubricVerdict:
        """The last `Score: N` of a reply, if within range."""
        if isinstance(reply, Exception):
            return RubricVerdict(None, f"{type(reply).__name__}: {reply}")
        found = _SCORE.findall(reply or "")
        score = float(found[-1]) if found else None
        if score is not None and not self.min_score <= score <= self.max_score:
            score = None
        return RubricVerdict(score, reply)

    def judge(self, engine: JudgeEngine, items: Sequence[tuple[str, str]]) -> list[RubricVerdict]:
        """Scores for (prompt, reply) items, in one engine call."""
        replies = engine.reply([self.conversation(p, r) for p, r in items])
        return [self.parse(reply) for reply in replies]
