"""Refuse, before any step runs, a loop naming an unknown model, dataset, pipeline or field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loop.context import LoopContext, resolve_path, split_ref
from loop.names import planned_models
from loop.spec import LoopSpec, LoopSpecError


def data_outputs(spec: LoopSpec, spec_dir: Path) -> dict[str, str]:
    """Dataset name → the data step that produces it (each pipeline spec is loaded and checked)."""
    from datagen.spec import load_spec

    produced: dict[str, str] = {}
    for step in spec.data:
        loaded = load_spec(resolve_path(spec_dir, step.pipeline), step.set)
        if step.arbiter is not None:  # the fallback must give a valid spec too
            load_spec(resolve_path(spec_dir, step.pipeline), [*step.set, *step.arbiter.fallback])
        for output in loaded.spec.outputs:
            produced[output.dataset] = step.name
    return produced


def check_loop(spec: LoopSpec, spec_dir: Path, context: LoopContext, *, resuming: bool = False) -> None:
    """Refuse, before any step runs, a loop naming an unknown model, dataset, pipeline or field.

    Raises:
        AssayError: the first problem, in one line.
    """
    import eval_sets
    from loop.evaluation import has_dev_split

    context.store.resolve(spec.start)
    for suite in spec.evaluation.suites:
        eval_sets.identity(suite)  # the evaluation data is there
    if spec.merge is not None and spec.merge.search is not None:
        for expert in spec.experts:
            if not has_dev_split(expert.domain):
                raise LoopSpecError(
                    f"merge.search: suite {expert.domain!r} (the domain of expert {expert.name!r}) has "
                    "no dev split to search weights on; give merge.weights instead"
                )
    produced = data_outputs(spec, spec_dir)
    for step in spec.data:
        if step.arbiter is not None:
            context.store.resolve(step.arbiter.model)
            try:
                heldout = context.registry.open(step.arbiter.heldout)
            except Exception as err:
                raise LoopSpecError(f"data.{step.name}.arbiter.heldout: {err}") from err
            if heldout.kind not in ("rm_pairs", "preference"):
                raise LoopSpecError(
                    f"data.{step.name}.arbiter.heldout: {heldout.ref} is of kind {heldout.kind!r}; "
                    "need rm_pairs or preference"
                )
    if spec.refinement is not None:
        _check_refinement(spec, spec_dir, produced, context)
        produced[spec.refinement.output] = "refinement"
    for expert in spec.experts:
        where = f"experts.{expert.name}"
        _check_dataset(f"{where}.dataset", expert.dataset, produced, context)
        _check_train(f"{where}.train", expert.train, expert.dataset, spec)
        if expert.preference is not None:
            _check_dataset(f"{where}.preference.dataset", expert.preference.dataset, produced, context)
            _check_train(
                f"{where}.preference.train", expert.preference.train, expert.preference.dataset, spec
            )
    for round_ in spec.polish.rounds if spec.polish else []:
        where = f"polish.rounds.{round_.name}"
        if round_.pipeline is None:
            _check_dataset(f"{where}.dataset", round_.dataset, produced, context)
        else:
            overrides = [*round_.set, *([f"{round_.model_key}={spec.start}"] if round_.model_key else [])]
            _check_output(f"{where}.dataset", spec_dir, round_.pipeline, overrides, round_.dataset)
        _check_train(f"{where}.train", round_.train, round_.dataset, spec)
    if not resuming:
        for model in planned_models(spec):
            if context.store.has(model):
                raise LoopSpecError(
                    f"a model named {model!r} is already stored: rename the loop or remove it"
                )


def _check_refinement(spec: LoopSpec, spec_dir: Path, produced: dict[str, str], context: LoopContext) -> None:
    from loop.evaluation import has_dev_split

    refinement = spec.refinement
    assert refinement is not None
    if refinement.output in produced:
        raise LoopSpecError(
            f"refinement.output: {refinement.output!r} is also produced by data step "
            f"{produced[refinement.output]!r}"
        )
    lacking = [suite for suite in refinement.critical if not has_dev_split(suite)]
    if lacking:
        raise LoopSpecError(f"refinement.critical: suite {lacking[0]!r} has no dev split to decide on")
    for i, ref in enumerate(refinement.base):
        _check_dataset(f"refinement.base.{i}", ref, produced, context)
    for candidate in refinement.candidates:
        where = f"refinement.candidates.{candidate.name}"
        _check_dataset(f"{where}.dataset", candidate.dataset, produced, context)
        if candidate.retry is not None:
            retry = candidate.retry
            _check_output(f"{where}.retry.dataset", spec_dir, retry.pipeline, retry.set, retry.dataset)
    _check_train("refinement.train", refinement.train, refinement.base[0], spec)


def _check_output(where: str, spec_dir: Path, pipeline: str, overrides: list[str], dataset: str) -> None:
    """A pipeline spec loads with its overrides, and `dataset` is one of its outputs."""
    from datagen.spec import load_spec

    loaded = load_spec(resolve_path(spec_dir, pipeline), overrides)
    outputs = [output.dataset for output in loaded.spec.outputs]
    if split_ref(dataset)[0] not in outputs:
        raise LoopSpecError(f"{where}: {dataset!r} is not an output of {pipeline} ({', '.join(outputs)})")


def _check_dataset(where: str, ref: str, produced: dict[str, str], context: LoopContext) -> None:
    """A dataset is registered, or produced by a data step (then named NAME@latest)."""
    name, version = split_ref(ref)
    if name in produced:
        if version != "latest":
            raise LoopSpecError(
                f"{where}: {ref!r} is produced by data step {produced[name]!r}; name it {name}@latest"
            )
        return
    try:
        context.registry.open(ref)
    except Exception as err:
        raise LoopSpecError(f"{where}: {err}") from err


def _check_train(where: str, train: dict[str, Any], dataset: str, spec: LoopSpec) -> None:
    from trainer.config import TrainConfig

    fields = {"model": spec.start, "dataset": f"{split_ref(dataset)[0]}@1", "output": spec.model_name("x")}
    try:
        TrainConfig.model_validate({**train, **fields})
    except ValueError as err:
        lines = str(err).splitlines()
        raise LoopSpecError(f"{where}: {' '.join(lines[1:3]) or err}") from err
