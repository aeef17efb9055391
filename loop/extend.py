"""Continue a loop under a longer spec: polish rounds (or other gates) added after its results.

A loop's steps are functions of its frozen spec, so a finished step stays valid under a new
spec only when the sections it was computed from are unchanged. `extend` therefore accepts a
new spec, in the loop's own folder (relative pipeline paths mean the same files), that differs
from the frozen one in `polish` and `gates` alone: every step before polish (data, experts,
merge and their evaluations) keeps its result, and polish and the gates run on top. A polish
section may change only while none of its steps is done, since a model it trained would no
longer match the spec it is recorded under; likewise `gates.max_contamination`, which every
training step applies, only while no model is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loop.names import planned_models
from loop.runner import step_names
from loop.spec import LoopSpec, LoopSpecError
from loop.state import LoopState

EXTENSIBLE = ("polish", "gates")
"""The spec's sections a loop may be extended in; the others must be the frozen spec's."""
POLISH_STEPS = ("eval:polished", "interpolate", "eval:final")
"""Steps that depend on the polish section, besides the `polish:...` rounds."""
TRAINING_STEPS = ("expert:", "prefer:", "refine:", "polish:")
"""Prefixes of the steps that train a model (each refuses data above `gates.max_contamination`)."""


def _polish_step(step: str) -> bool:
    return step.startswith("polish:") or step in POLISH_STEPS


def extend_state(
    state: LoopState, spec: LoopSpec, raw: dict[str, Any], spec_dir: Path
) -> tuple[LoopState, list[str]]:
    """`state` under the new spec `raw` (validated as `spec`), with the results it may keep;
    the new models it plans (which must not be stored yet).

    Raises:
        LoopSpecError: the new spec renames the loop, lies in another folder, changes a section
            other than polish and gates, changes polish after one of its steps finished, or
            changes the contamination threshold after a model was trained.
    """
    if spec.name != state.name:
        raise LoopSpecError(f"the spec names loop {spec.name!r}, not {state.name!r}")
    if spec_dir.resolve() != Path(state.spec_dir).resolve():
        raise LoopSpecError(
            f"loop {state.name}: the spec must lie in the loop's folder {state.spec_dir}, where its "
            "relative pipeline paths were read"
        )
    changed = [key for key in sorted(set(raw) | set(state.spec))
               if key not in EXTENSIBLE and raw.get(key) != state.spec.get(key)]  # fmt: skip
    if changed:
        raise LoopSpecError(
            f"loop {state.name}: `extend` may change only {' and '.join(EXTENSIBLE)}, and the spec "
            f"changes {changed[0]!r}; start a loop under another name for that"
        )
    if raw.get("polish") != state.spec.get("polish"):
        finished = [step for step in state.steps if _polish_step(step) and state.done(step)]
        if finished:
            raise LoopSpecError(
                f"loop {state.name}: its polish step {finished[0]} is done, so its polish section "
                "cannot change; start a loop under another name for that"
            )
    frozen = LoopSpec.model_validate(state.spec)
    if spec.gates.max_contamination != frozen.gates.max_contamination:
        trained = [step for step in state.steps if step.startswith(TRAINING_STEPS) and state.done(step)]
        if trained:
            raise LoopSpecError(
                f"loop {state.name}: step {trained[0]} trained under gates.max_contamination "
                f"{frozen.gates.max_contamination}, so the threshold cannot change; start a loop under "
                "another name for that"
            )
    keep = set(step_names(spec)) - {"gates"}  # the gates judge the final model: always again
    steps = {step: record for step, record in state.steps.items() if step in keep and record.status == "done"}
    old_models = set(planned_models(frozen))
    new_models = [model for model in planned_models(spec) if model not in old_models]
    extended = LoopState(
        name=state.name, spec=raw, spec_dir=str(spec_dir), steps=steps, created_at=state.created_at
    )
    return extended, new_models
