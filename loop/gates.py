"""The loop's gates, as pure functions over evaluation summaries.

A summary is {suite: {metric: {"value", "stderr", "n", "higher_is_better"}}}; each suite has one
primary metric the gates read. "Beats" means by more than one combined standard error,
sqrt(se_a² + se_b²); "at least" means not worse by more than one combined standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Summary = dict[str, dict[str, dict[str, Any]]]

# The metric each suite is judged by (see docs/evals.md for their definitions).
PRIMARY_METRICS = {
    "ifeval": "prompt_strict",
    "humaneval": "pass@1",
    "mgsm": "accuracy",
    "xstest": "balance",
}


@dataclass(frozen=True)
class Gate:
    """One check: what was compared, whether it passed, and the numbers behind it."""

    name: str
    passed: bool
    detail: str


def primary(summary: Summary, suite: str) -> tuple[float, float]:
    """(value, stderr) of the suite's primary metric, oriented so that higher is better."""
    metric = summary[suite][PRIMARY_METRICS[suite]]
    sign = 1.0 if metric.get("higher_is_better", True) else -1.0
    return sign * metric["value"], metric["stderr"]


def _combined(a: float, b: float) -> float:
    return math.sqrt(a * a + b * b)


def expert_beats_start(expert: str, domain: str, start: Summary, trained: Summary) -> Gate:
    """The expert beats the start model on its own domain by more than one combined stderr."""
    (s, s_se), (e, e_se) = primary(start, domain), primary(trained, domain)
    margin = _combined(s_se, e_se)
    return Gate(
        f"expert {expert} beats start on {domain}",
        e - s > margin,
        f"{PRIMARY_METRICS[domain]} {e:.3f} vs start {s:.3f} (needs > +{margin:.3f})",
    )


def soup_keeps_gain(
    expert: str, domain: str, start: Summary, trained: Summary, soup: Summary, share: float
) -> Gate:
    """The soup keeps at least `share` of the expert's own-domain gain over the start."""
    s, e, m = primary(start, domain)[0], primary(trained, domain)[0], primary(soup, domain)[0]
    gain = e - s
    if gain <= 0:
        return Gate(f"soup keeps {expert}'s gain on {domain}", True, "the expert gained nothing to keep")
    kept = (m - s) / gain
    return Gate(
        f"soup keeps {expert}'s gain on {domain}",
        kept >= share,
        f"kept {kept:.0%} of +{gain:.3f} (needs {share:.0%})",
    )


def final_at_least_start(suite: str, start: Summary, final: Summary) -> Gate:
    """The final model is no worse than the start on the suite, within one combined stderr."""
    (s, s_se), (f, f_se) = primary(start, suite), primary(final, suite)
    margin = _combined(s_se, f_se)
    return Gate(
        f"final at least start on {suite}",
        f >= s - margin,
        f"{PRIMARY_METRICS[suite]} {f:.3f} vs start {s:.3f} (± {margin:.3f})",
    )
