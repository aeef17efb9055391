"""Iterative supervised refinement of the SFT data mix (Command R7B Arabic report, section 3.3).

1. Fine-tune on a base mix of instruction data and evaluate.
2. For each candidate dataset, add it to the mix kept so far, fine-tune, evaluate.
3. Keep it when a critical capability improves; otherwise refine its prompts (multilingual
   arbitrage, a pipeline) and try the refined data once more.

Decisions read the dev splits only (never the test splits the loop reports), and "improves"
means by more than one combined standard error, as the loop's gates do. This module holds the
pure parts: the mixing of registered SFT datasets, the decision and the mix accepted so far.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from datasets_registry import DatasetVersion, Registry
from datasets_registry.lineage import Lineage
from loop.gates import PRIMARY_METRICS, Gate, Summary, primary
from loop.spec import LoopSpecError, RefinementSpec
from loop.state import LoopState


def register_mix(registry: Registry, name: str, refs: list[str]) -> DatasetVersion:
    """Concatenate SFT datasets (their `messages`) into a new version of `name`, sources kept."""
    parts, sources = [], []
    for ref in refs:
        version = registry.open(ref)
        if version.kind != "sft":
            raise LoopSpecError(f"refinement: {version.ref} is of kind {version.kind!r}; a mix needs sft")
        parts.append(version.to_arrow(columns=["messages"]))
        sources.append(version.ref)
    return registry.write(name, pa.concat_tables(parts), kind="sft", lineage=Lineage(sources=sources))


def helps(candidate: str, critical: list[str], before: Summary, after: Summary) -> Gate:
    """Whether adding `candidate` improved any critical suite by more than one combined stderr."""
    details, better = [], False
    for suite in critical:
        (b, b_se), (a, a_se) = primary(before, suite), primary(after, suite)
        margin = (b_se**2 + a_se**2) ** 0.5
        better = better or a - b > margin
        details.append(f"{suite} {PRIMARY_METRICS[suite]} {a:.3f} vs {b:.3f} (needs > +{margin:.3f})")
    return Gate(f"{candidate} improves a critical suite", better, "; ".join(details))


def trial_steps(refinement: RefinementSpec) -> list[tuple[str, str]]:
    """(step, candidate) for every trial after the base, in order: each candidate, then its retry."""
    steps = []
    for candidate in refinement.candidates:
        steps.append((f"refine:{candidate.name}", candidate.name))
        if candidate.retry is not None:
            steps.append((f"refine:{candidate.name}:retry", candidate.name))
    return steps


def accepted(refinement: RefinementSpec, state: LoopState) -> dict[str, Any]:
    """The newest accepted trial among finished ones: the base, or the last kept candidate."""
    current = state.result("refine:base")
    for step, _ in trial_steps(refinement):
        if state.done(step) and state.result(step).get("kept"):
            current = state.result(step)
    return current
