"""The loop's evaluator: the harness's suites on one model, summarised for the gates.

Results are stored with the model by the harness (`assay models show`, `assay eval compare`);
the loop keeps the summary (every metric's value, stderr and n) in its own state.
"""

from __future__ import annotations

from evals.run import evaluate_model
from loop.gates import Summary
from loop.spec import EvaluationSpec


def evaluate_summary(model: str, spec: EvaluationSpec) -> Summary:
    """Run the spec's suites on `model`: {suite: {metric: {value, stderr, n, higher_is_better}}}."""
    runs = evaluate_model(
        model, spec.suites, backend=spec.backend, limit=spec.limit, max_tokens=spec.max_tokens
    )
    return {
        run.result.suite: {metric.name: metric.as_dict() for metric in run.result.metrics} for run in runs
    }
