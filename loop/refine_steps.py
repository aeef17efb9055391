"""The steps of iterative supervised refinement (Command R7B Arabic report, 3.3; the decision
and the mixing are in `loop.refinement`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loop.context import LoopContext, LoopStepError, resolve_path, split_ref
from loop.data import dataset_ref, run_pipeline
from loop.spec import LoopSpec, RefinementCandidate
from loop.state import LoopState
from loop.training import train


def refine_trial(step: str, spec: LoopSpec, state: LoopState, context: LoopContext) -> dict[str, Any]:
    """One trial of iterative supervised refinement: the mix accepted so far plus one dataset
    (nothing, for the base), SFT from the start model, evaluated on the critical dev splits."""
    from loop.refinement import accepted, helps, register_mix

    refinement = spec.refinement
    assert refinement is not None
    role = step.replace(":", "-")  # refine-base, refine-NAME, refine-NAME-retry
    if step == "refine:base":
        before, mix = None, [dataset_ref(ref, spec, state) for ref in refinement.base]
    else:
        candidate = step.split(":")[1]
        if step.endswith(":retry"):
            if state.result(f"refine:{candidate}")["kept"]:
                return {"skipped": f"refine:{candidate} kept the candidate", "kept": False}
            data = state.result(f"{step}:data")
            added = data["outputs"][split_ref(_candidate(spec, candidate).retry.dataset)[0]]
        else:
            added = dataset_ref(_candidate(spec, candidate).dataset, spec, state)
        before = accepted(refinement, state)
        mix = [*before["mix"], added]
    model = spec.model_name(role)
    if context.store.has(model):  # trained by a run killed before it saved the step, on this mix?
        ref = (context.store.record(model).get("lineage", {}).get("datasets") or ["?"])[0]
        sources = context.registry.open(ref).info.lineage.sources if ref != "?" else []
        if sources != [context.registry.open(r).ref for r in mix]:
            raise LoopStepError(f"a model named {model!r} is stored but was not trained on the mix {mix}")
    else:
        ref = register_mix(context.registry, f"{refinement.output}-trials", mix).ref
    trained = train(spec.start, ref, refinement.train, model, spec, context)
    dev = spec.evaluation.model_copy(
        update={"suites": refinement.critical, "limit": refinement.limit, "split": "dev"}
    )
    scores = context.evaluate(model, dev)
    result = {"model": model, "mix": mix, "dataset": ref, "scores": scores, "metrics": trained.get("metrics")}
    if before is None:
        return result | {"kept": True}
    gate = helps(step.split(":")[1], refinement.critical, before["scores"], scores)
    context.log(f"{step}: {'kept' if gate.passed else 'not kept'}: {gate.detail}")
    return result | {"kept": gate.passed, "detail": gate.detail}


def _candidate(spec: LoopSpec, name: str) -> RefinementCandidate:
    assert spec.refinement is not None
    return next(c for c in spec.refinement.candidates if c.name == name)


def refine_retry_data(
    candidate: str, spec: LoopSpec, state: LoopState, spec_dir: Path, context: LoopContext
) -> dict[str, Any]:
    """Refine a candidate that did not help (its retry pipeline, e.g. arbitrage over its prompts)."""
    if state.result(f"refine:{candidate}")["kept"]:
        return {"skipped": f"refine:{candidate} kept the candidate"}
    retry = _candidate(spec, candidate).retry
    assert retry is not None
    return run_pipeline(resolve_path(spec_dir, retry.pipeline), list(retry.set), context)


def refine_mix(spec: LoopSpec, state: LoopState, context: LoopContext) -> dict[str, Any]:
    """Register the accepted mix as the refinement's output, for the experts."""
    from loop.refinement import accepted, register_mix

    assert spec.refinement is not None
    current = accepted(spec.refinement, state)
    version = register_mix(context.registry, spec.refinement.output, current["mix"])
    return {
        "outputs": {spec.refinement.output: version.ref},
        "mix": current["mix"],
        "trained": current["model"],
    }
