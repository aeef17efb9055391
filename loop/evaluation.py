"""The loop's evaluator: the harness's suites on one model, summarised for the gates.

Results are stored with the model by the harness (`assay models show`, `assay eval compare`);
the loop keeps the summary (every metric's value, stderr and n) in its own state.
"""

from __future__ import annotations

import inspect
import os

from evals.run import evaluate_model
from evals.suites import SUITES
from loop.gates import Summary
from loop.spec import EvaluationSpec


def has_dev_split(suite: str) -> bool:
    """Whether the suite can measure its dev split (its constructor takes `split`)."""
    return suite in SUITES and "split" in inspect.signature(SUITES[suite]).parameters


def evaluate_summary(model: str, spec: EvaluationSpec) -> Summary:
    """Run the spec's suites on `model`: {suite: {metric: {value, stderr, n, higher_is_better}}}.

    Raises:
        EvalError: the dev split of a suite that has none, before the model loads (`build_suite`:
            never silently the test split).
    """
    options = {"split": spec.split} if spec.split != "test" else {}
    runs = evaluate_model(
        model,
        spec.suites,
        backend=spec.backend,
        limit=spec.limit,
        max_tokens=spec.max_tokens,
        threads=spec.threads or os.cpu_count(),
        options=options,
    )
    return {
        run.result.suite: {metric.name: metric.as_dict() for metric in run.result.metrics} for run in runs
    }
