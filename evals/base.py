"""What every evaluation suite returns: metrics with their standard error and sample size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from assay.errors import AssayError


class EvalError(AssayError, ValueError):
    """A bad evaluation request: an unknown suite or metric, a model that cannot be evaluated."""


@dataclass(frozen=True)
class Metric:
    """One number a suite measured, with its standard error over `n` items.

    For a mean of per-item scores the standard error is the sample standard deviation over
    sqrt(n); for a proportion p that is sqrt(p (1 - p) / (n - 1)).
    """

    name: str
    value: float
    stderr: float
    n: int
    higher_is_better: bool = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def mean_with_stderr(name: str, scores: Sequence[float], *, higher_is_better: bool = True) -> Metric:
    """The mean of per-item `scores` and its standard error (0 with fewer than two items)."""
    n = len(scores)
    if n == 0:
        return Metric(name, math.nan, math.nan, 0, higher_is_better)
    mean = sum(scores) / n
    if n < 2:
        return Metric(name, mean, 0.0, n, higher_is_better)
    variance = sum((s - mean) ** 2 for s in scores) / (n - 1)
    return Metric(name, mean, math.sqrt(variance / n), n, higher_is_better)


@dataclass
class SuiteResult:
    """One suite's run on one model: its metrics, the evaluation set it read, and per-item records.

    `eval_set` is `eval_sets.identity(...)` of the set measured (which files, which split);
    `items` holds one record per item (id, the response, the per-item score, ...) so a reader
    can see why a number is what it is.
    """

    suite: str
    eval_set: str
    metrics: list[Metric]
    items: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> Metric:
        """The metric called `name`."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        names = ", ".join(m.name for m in self.metrics)
        raise EvalError(f"suite {self.suite!r} has no metric {name!r}; it has {names}")


Conversation = Sequence[dict[str, str]]


class Generator(Protocol):
    """A model as suites see it: chat conversations in, sampled reply texts out.

    `evals.generation` implements it over datagen's engines (hf, vllm, openai) and the LLM-call
    cache; tests may pass any object with this shape.
    """

    model_identity: str

    def complete(
        self,
        conversations: Sequence[Conversation],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int = 0,
    ) -> list[list[str] | Exception]:
        """`n` reply texts per conversation (temperature 0 = greedy), or the error that failed it."""
        ...


class Suite(Protocol):
    """An evaluation suite: a fixed set, a way to prompt, a way to score."""

    name: str

    def run(self, generator: Generator, *, limit: int | None = None) -> SuiteResult:
        """Evaluate the generator's model on the set (its first `limit` items when given)."""
        ...
