"""Data steps: run a pipeline spec as a job and keep the exact versions it registered; check a
reward model before it selects; find the version an expert or a round trains on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loop.context import LoopContext, resolve_path, split_ref
from loop.spec import ArbiterCheck, DataStep, LoopSpec, PolishRound
from loop.state import LoopState


def run_data(step: DataStep, spec_dir: Path, context: LoopContext) -> dict[str, Any]:
    """A data step: check its arbiter (falling back to the verifiers when it is not trusted), run it."""
    overrides, checked = list(step.set), {}
    if step.arbiter is not None:
        checked = _check_arbiter(step.arbiter, context)
        if not checked["trusted"]:
            overrides += step.arbiter.fallback
            context.log(
                f"{step.name}: selecting without the reward model ({', '.join(step.arbiter.fallback)})"
            )
    result = run_pipeline(resolve_path(spec_dir, step.pipeline), overrides, context)
    return result | ({"arbiter": checked} if checked else {})


def run_pipeline(path: Path, overrides: list[str], context: LoopContext) -> dict[str, Any]:
    """Run one pipeline spec as a job; its outputs' exact versions and the job's counts."""
    from datagen.job import prepare_job, run_job
    from datagen.spec import load_spec

    loaded = load_spec(path, overrides)
    job = prepare_job(loaded, context.registry, context.store, use_cache=context.use_cache)
    report = run_job(job, context.registry, log=context.log)
    return {
        "job_id": report.job_id,
        "outputs": {output.ref.partition("@")[0]: output.ref for output in report.outputs},
        "rows_in": report.rows_in,
        "rows_failed": report.rows_failed,
        "overrides": overrides,
    }


def _check_arbiter(arbiter: ArbiterCheck, context: LoopContext) -> dict[str, Any]:
    """The reward model's trust report on held-out pairs (logged in one line)."""
    from reward_model.check import evaluate_on_pairs
    from reward_model.eval import format_trust

    model = context.store.resolve(arbiter.model)
    evaluation = evaluate_on_pairs(model.path, context.registry.open(arbiter.heldout), limit=arbiter.limit)
    context.log(f"{arbiter.model} on {arbiter.heldout}: {format_trust(evaluation.trust)}")
    return {"model": arbiter.model, "heldout": arbiter.heldout, **evaluation.trust.as_dict()}


def dataset_ref(ref: str, spec: LoopSpec, state: LoopState) -> str:
    """The exact version to train on: a data step's output as registered, else `ref` as named."""
    name, _ = split_ref(ref)
    for step in [f"data:{data.name}" for data in spec.data] + ["refine:mix"]:
        outputs = state.result(step)["outputs"] if state.done(step) else {}
        if name in outputs:
            return outputs[name]
    return ref


def polish_data(round_: PolishRound, newest: str, spec_dir: Path, context: LoopContext) -> dict[str, Any]:
    """Generate a polish round's data, with the loop's newest model where the round names its key."""
    assert round_.pipeline is not None
    overrides = [*round_.set, *([f"{round_.model_key}={newest}"] if round_.model_key else [])]
    return run_pipeline(resolve_path(spec_dir, round_.pipeline), overrides, context) | {"generator": newest}
