"""Run a loop spec step by step, saving each finished step, resuming after the last one.

Steps, in order (each a key of the saved state):

- `data:NAME`: run the pipeline, register its outputs; result: {dataset: ref} and the job id;
- with `refinement`: `refine:base` (SFT on the base mix, measured on the critical dev splits),
  `refine:NAME` per candidate (kept if a critical dev metric improves), `refine:NAME:retry:data`
  and `refine:NAME:retry` (a candidate not kept, refined by its pipeline and tried once more),
  `refine:mix` (the accepted mix, registered for the experts);
- `eval:start`: the start model on the suite;
- `expert:NAME`: refuse a contaminated dataset, train, register `<loop>-NAME`; with `seeds`,
  `expert:NAME:seed-S` trains one run per seed and `expert:NAME` averages them (a seed merge);
  with `preference`, the SFT model is `<loop>-NAME-sft` and `prefer:NAME` trains `<loop>-NAME`
  from it on preference pairs; then `eval:NAME`;
- `merge`: the linear soup `<loop>-soup` (two or more experts); `eval:soup`; with
  `leave_one_out` and three or more experts, `merge:without-NAME` and `eval:without-NAME` for
  each expert (with two, the soup without one is the other expert, already evaluated);
- `polish:ROUND[-i]:data` (a round with a pipeline, generating with the newest model) and
  `polish:ROUND[-i]` (training the newest model on it), round after round; `eval:polished`;
  with `interpolation`, `interpolate` (WARP's step back toward the merged model) and `eval:final`;
- `gates`: every gate, reported; with `enforce`, a failed gate fails the step.

The final model is the interpolated one, else the last polished one, else the soup, else the
only expert. A failed step leaves every finished one recorded (and its artifacts registered);
`resume` runs the failed step again. `run_step` runs one step alone, as a step job does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datasets_registry import Registry
from loop.gates import Gate, Summary, expert_beats_start, final_at_least_start, soup_keeps_gain
from loop.refinement import trial_steps
from loop.spec import (
    ArbiterCheck,
    DataStep,
    EvaluationSpec,
    ExpertStep,
    LoopSpec,
    LoopSpecError,
    PolishRound,
    RefinementCandidate,
)
from loop.state import LoopState, StepRecord, save_state
from model_store import ModelStore

Evaluate = Callable[[str, EvaluationSpec], Summary]
Log = Callable[[str], None]


class LoopStepError(LoopSpecError):
    """A step failed; the loop state records it and `assay loop resume` retries it."""


@dataclass
class LoopContext:
    """What the steps use: the registry, the model store, the evaluator and where state goes."""

    registry: Registry
    store: ModelStore
    home: Path
    evaluate: Evaluate
    log: Log = print
    use_cache: bool = True


def _split_ref(ref: str) -> tuple[str, str]:
    name, _, version = ref.partition("@")
    return name, version or "latest"


def data_outputs(spec: LoopSpec, spec_dir: Path) -> dict[str, str]:
    """Dataset name → the data step that produces it (each pipeline spec is loaded and checked)."""
    from datagen.spec import load_spec

    produced: dict[str, str] = {}
    for step in spec.data:
        loaded = load_spec(_resolve(spec_dir, step.pipeline), step.set)
        if step.arbiter is not None:  # the fallback must give a valid spec too
            load_spec(_resolve(spec_dir, step.pipeline), [*step.set, *step.arbiter.fallback])
        for output in loaded.spec.outputs:
            produced[output.dataset] = step.name
    return produced


def _resolve(spec_dir: Path, relative: str) -> Path:
    path = Path(relative).expanduser()
    return path if path.is_absolute() else spec_dir / path


def check_loop(spec: LoopSpec, spec_dir: Path, context: LoopContext, *, resuming: bool = False) -> None:
    """Refuse, before any step runs, a loop naming an unknown model, dataset, pipeline or field.

    Raises:
        AssayError: the first problem, in one line.
    """
    import eval_sets
    from datagen.spec import load_spec
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
            loaded = load_spec(_resolve(spec_dir, round_.pipeline), overrides)
            outputs = [output.dataset for output in loaded.spec.outputs]
            if _split_ref(round_.dataset)[0] not in outputs:
                raise LoopSpecError(
                    f"{where}.dataset: {round_.dataset!r} is not an output of {round_.pipeline} "
                    f"({', '.join(outputs)})"
                )
        _check_train(f"{where}.train", round_.train, round_.dataset, spec)
    if not resuming:
        for model in planned_models(spec):
            if context.store.has(model):
                raise LoopSpecError(
                    f"a model named {model!r} is already stored: rename the loop or remove it"
                )


def _check_refinement(spec: LoopSpec, spec_dir: Path, produced: dict[str, str], context: LoopContext) -> None:
    from datagen.spec import load_spec
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
            loaded = load_spec(_resolve(spec_dir, candidate.retry.pipeline), candidate.retry.set)
            outputs = [output.dataset for output in loaded.spec.outputs]
            if _split_ref(candidate.retry.dataset)[0] not in outputs:
                raise LoopSpecError(
                    f"{where}.retry.dataset: {candidate.retry.dataset!r} is not an output of "
                    f"{candidate.retry.pipeline} ({', '.join(outputs)})"
                )
    _check_train("refinement.train", refinement.train, refinement.base[0], spec)


def _check_dataset(where: str, ref: str, produced: dict[str, str], context: LoopContext) -> None:
    """A dataset is registered, or produced by a data step (then named NAME@latest)."""
    name, version = _split_ref(ref)
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

    fields = {"model": spec.start, "dataset": f"{_split_ref(dataset)[0]}@1", "output": spec.model_name("x")}
    try:
        TrainConfig.model_validate({**train, **fields})
    except ValueError as err:
        lines = str(err).splitlines()
        raise LoopSpecError(f"{where}: {' '.join(lines[1:3]) or err}") from err


def planned_models(spec: LoopSpec) -> list[str]:
    """Every model the loop registers, by store name."""
    models = []
    if spec.refinement is not None:
        models.append(spec.model_name("refine-base"))
        models += [spec.model_name(step.replace(":", "-")) for step, _ in trial_steps(spec.refinement)]
    for expert in spec.experts:
        models += [spec.model_name(f"{expert.name}-seed-{seed}") for seed in expert.seeds or []]
        if expert.preference is not None:
            models.append(spec.model_name(f"{expert.name}-sft"))
        models.append(spec.model_name(expert.name))
    if spec.merge is not None:
        models.append(spec.model_name("soup"))
        if _leave_one_out(spec):
            models += [spec.model_name(f"without-{e.name}") for e in spec.experts]
    models += [spec.model_name(f"polish-{label}") for label, _ in polish_labels(spec)]
    if spec.polish is not None and spec.polish.interpolation is not None:
        models.append(spec.model_name("final"))
    return models


def _leave_one_out(spec: LoopSpec) -> bool:
    """Leave-one-out soups only where the rest is a soup: with two experts it is the other expert."""
    return spec.merge is not None and spec.merge.leave_one_out and len(spec.experts) > 2


def polish_labels(spec: LoopSpec) -> list[tuple[str, PolishRound]]:
    """Each polish run in order: the round's name, with `-i` when the round repeats."""
    labels = []
    for round_ in spec.polish.rounds if spec.polish else []:
        if round_.repeat == 1:
            labels.append((round_.name, round_))
        else:
            labels += [(f"{round_.name}-{i}", round_) for i in range(1, round_.repeat + 1)]
    return labels


def step_names(spec: LoopSpec) -> list[str]:
    """The loop's steps, in the order they run."""
    return [name for name, _ in _plan(spec, LoopState(name=spec.name, spec={}, spec_dir="."), None)]


def run_loop(spec: LoopSpec, state: LoopState, context: LoopContext) -> LoopState:
    """Run every step not yet done, saving the state after each.

    Raises:
        LoopStepError: a step failed (recorded in the state).
    """
    for step, run in _plan(spec, state, context):
        if not state.done(step):
            _run_step(spec, state, context, step, run)
    return state


def run_step(spec: LoopSpec, state: LoopState, context: LoopContext, step: str) -> dict[str, Any]:
    """Run one step (as a job of the job system does), saving the state; its result.

    Raises:
        LoopStepError: a step before it is not done, or the step failed (recorded in the state).
    """
    plan = _plan(spec, state, context)
    names = [name for name, _ in plan]
    if step not in names:
        raise LoopStepError(f"loop {spec.name} has no step {step!r}")
    waiting = [name for name in names[: names.index(step)] if not state.done(name)]
    if waiting:
        raise LoopStepError(f"loop {spec.name}: step {step} needs {waiting[0]} done first")
    if not state.done(step):
        _run_step(spec, state, context, step, dict(plan)[step])
    return state.result(step)


def _run_step(
    spec: LoopSpec, state: LoopState, context: LoopContext, step: str, run: Callable[[], dict[str, Any]]
) -> None:
    context.log(f"step {step}")
    started = time.monotonic()
    try:
        result = run()
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        state.steps[step] = StepRecord("failed", error=error, wall_s=_since(started))
        save_state(context.home, state)
        raise LoopStepError(f"loop {spec.name}: step {step} failed: {err}") from err
    state.steps[step] = StepRecord(
        "done", result, wall_s=_since(started), finished_at=datetime.now(UTC).isoformat()
    )
    save_state(context.home, state)


def _plan(
    spec: LoopSpec, state: LoopState, context: LoopContext | None
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """Each step's name and the call that runs it (`context` None: names only)."""
    spec_dir = Path(state.spec_dir)
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    for data in spec.data:
        steps.append((f"data:{data.name}", lambda d=data: _run_data(d, spec_dir, context)))
    if spec.refinement is not None:
        steps.append(("refine:base", lambda: _refine_trial("refine:base", spec, state, context)))
        for step, candidate in trial_steps(spec.refinement):
            if step.endswith(":retry"):
                data = lambda c=candidate: _refine_retry_data(c, spec, state, spec_dir, context)  # noqa: E731
                steps.append((f"{step}:data", data))
            steps.append((step, lambda s=step: _refine_trial(s, spec, state, context)))
        steps.append(("refine:mix", lambda: _refine_mix(spec, state, context)))
    steps.append(("eval:start", lambda: _evaluate(spec.start, spec, context)))
    for expert in spec.experts:
        for seed in expert.seeds or []:
            train = lambda e=expert, s=seed: _train_expert(e, spec, state, context, seed=s)  # noqa: E731
            steps.append((f"expert:{expert.name}:seed-{seed}", train))
        steps.append((f"expert:{expert.name}", lambda e=expert: _train_expert(e, spec, state, context)))
        if expert.preference is not None:
            steps.append((f"prefer:{expert.name}", lambda e=expert: _prefer(e, spec, state, context)))
        steps.append(
            (f"eval:{expert.name}", lambda e=expert: _evaluate(spec.model_name(e.name), spec, context))
        )
    if spec.merge is not None:
        steps.append(("merge", lambda: _merge(spec, None, state, context)))
        steps.append(("eval:soup", lambda: _evaluate(spec.model_name("soup"), spec, context)))
        if _leave_one_out(spec):
            for expert in spec.experts:
                role = f"without-{expert.name}"
                steps.append((f"merge:{role}", lambda e=expert: _merge(spec, e.name, state, context)))
                steps.append((f"eval:{role}", lambda r=role: _evaluate(spec.model_name(r), spec, context)))
    if spec.polish is not None:
        newest = _merged_model(spec)
        for label, round_ in polish_labels(spec):
            if round_.pipeline is not None:
                data = lambda r=round_, m=newest: _polish_data(r, m, spec_dir, context)  # noqa: E731
                steps.append((f"polish:{label}:data", data))
            train = lambda r=round_, x=label, m=newest: _polish_train(r, x, m, spec, state, context)  # noqa: E731
            steps.append((f"polish:{label}", train))
            newest = spec.model_name(f"polish-{label}")
        steps.append(("eval:polished", lambda m=newest: _evaluate(m, spec, context)))
        if spec.polish.interpolation is not None:
            steps.append(("interpolate", lambda m=newest: _interpolate(spec, m, context)))
            steps.append(("eval:final", lambda: _evaluate(spec.model_name("final"), spec, context)))
    steps.append(("gates", lambda: _gates(spec, state)))
    return steps


def _merged_model(spec: LoopSpec) -> str:
    """The model after the merge: the soup, or the only expert."""
    return spec.model_name("soup" if spec.merge is not None else spec.experts[0].name)


def final_role(spec: LoopSpec) -> str:
    """The evaluation role of the loop's final model (its `eval:ROLE` step)."""
    if spec.polish is not None:
        return "final" if spec.polish.interpolation is not None else "polished"
    return "soup" if spec.merge is not None else spec.experts[0].name


def final_model(spec: LoopSpec) -> str:
    """The loop's final model: interpolated, polished, the soup, or the only expert."""
    role = final_role(spec)
    if role == "polished":
        return spec.model_name(f"polish-{polish_labels(spec)[-1][0]}")
    return spec.model_name(role)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 2)


def _run_data(step: DataStep, spec_dir: Path, context: LoopContext) -> dict[str, Any]:
    overrides, checked = list(step.set), {}
    if step.arbiter is not None:
        checked = _check_arbiter(step.arbiter, context)
        if not checked["trusted"]:
            overrides += step.arbiter.fallback
            context.log(
                f"{step.name}: selecting without the reward model ({', '.join(step.arbiter.fallback)})"
            )
    result = _run_pipeline(_resolve(spec_dir, step.pipeline), overrides, context)
    return result | ({"arbiter": checked} if checked else {})


def _run_pipeline(path: Path, overrides: list[str], context: LoopContext) -> dict[str, Any]:
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


def _dataset_ref(ref: str, spec: LoopSpec, state: LoopState) -> str:
    """The exact version to train on: a data step's output as registered, else `ref` as named."""
    name, _ = _split_ref(ref)
    for step in [f"data:{data.name}" for data in spec.data] + ["refine:mix"]:
        outputs = state.result(step)["outputs"] if state.done(step) else {}
        if name in outputs:
            return outputs[name]
    return ref


def _sft_model(spec: LoopSpec, expert: ExpertStep) -> str:
    """An expert's SFT model: the expert itself, or its `-sft` base when preference training follows."""
    return spec.model_name(f"{expert.name}-sft" if expert.preference is not None else expert.name)


def _train_expert(
    expert: ExpertStep, spec: LoopSpec, state: LoopState, context: LoopContext, seed: int | None = None
) -> dict[str, Any]:
    """One SFT run (of one seed, given `seed`); with `seeds` and no `seed`, the seed merge."""
    ref = _dataset_ref(expert.dataset, spec, state)
    if seed is not None:
        output = spec.model_name(f"{expert.name}-seed-{seed}")
        return _train(spec.start, ref, {**expert.train, "seed": seed}, output, spec, context)
    if expert.seeds is None:
        return _train(spec.start, ref, expert.train, _sft_model(spec, expert), spec, context)
    from trainer.merging.schemes import merge_linear_to_store

    runs = [spec.model_name(f"{expert.name}-seed-{s}") for s in expert.seeds]
    weights = [1.0 / len(runs)] * len(runs)
    name = _sft_model(spec, expert)
    if not context.store.has(name):
        merge_linear_to_store(context.store, runs, weights, name=name)
    return {"model": name, "experts": runs, "weights": weights, "dataset": ref}


def _prefer(expert: ExpertStep, spec: LoopSpec, state: LoopState, context: LoopContext) -> dict[str, Any]:
    assert expert.preference is not None
    ref = _dataset_ref(expert.preference.dataset, spec, state)
    base = _sft_model(spec, expert)
    return _train(base, ref, expert.preference.train, spec.model_name(expert.name), spec, context)


def _polish_data(round_: PolishRound, newest: str, spec_dir: Path, context: LoopContext) -> dict[str, Any]:
    """Generate a polish round's data, with the loop's newest model where the round names its key."""
    assert round_.pipeline is not None
    overrides = [*round_.set, *([f"{round_.model_key}={newest}"] if round_.model_key else [])]
    return _run_pipeline(_resolve(spec_dir, round_.pipeline), overrides, context) | {"generator": newest}


def _polish_train(
    round_: PolishRound, label: str, newest: str, spec: LoopSpec, state: LoopState, context: LoopContext
) -> dict[str, Any]:
    if round_.pipeline is not None:
        ref = state.result(f"polish:{label}:data")["outputs"][_split_ref(round_.dataset)[0]]
    else:
        ref = _dataset_ref(round_.dataset, spec, state)
    return _train(newest, ref, round_.train, spec.model_name(f"polish-{label}"), spec, context)


def _train(
    base: str, ref: str, train: dict[str, Any], output: str, spec: LoopSpec, context: LoopContext
) -> dict[str, Any]:
    """Train `base` on the dataset version `ref` into the stored model `output`, unless the
    dataset overlaps an evaluation set beyond the gate, or `output` is stored already (adopted
    when it was trained on `ref` by a run killed before it saved the step)."""
    from eval_sets.contamination import check_dataset
    from trainer.config import TrainConfig
    from trainer.run import prepare_training, run_training

    version = context.registry.open(ref)
    report = check_dataset(version)
    report.refuse_above(spec.gates.max_contamination)
    if context.store.has(output):
        record = context.store.record(output)
        if record.get("lineage", {}).get("datasets") == [version.ref]:
            return {"model": output, "base": base, "dataset": version.ref, "adopted": True}
        raise LoopStepError(f"a model named {output!r} is stored but was not trained on {version.ref}")
    config = TrainConfig.model_validate({**train, "model": base, "dataset": version.ref, "output": output})
    result = run_training(
        prepare_training(config, context.registry, context.store), context.store, log=context.log
    )
    return {
        "model": result.name,
        "base": base,
        "dataset": version.ref,
        "contaminated_rows": report.flagged_rows,
        "metrics": result.metrics,
    }


def _refine_trial(step: str, spec: LoopSpec, state: LoopState, context: LoopContext) -> dict[str, Any]:
    """One trial of iterative supervised refinement: the mix accepted so far plus one dataset
    (nothing, for the base), SFT from the start model, evaluated on the critical dev splits."""
    from loop.refinement import accepted, helps, register_mix

    refinement = spec.refinement
    assert refinement is not None
    role = step.replace(":", "-")  # refine-base, refine-NAME, refine-NAME-retry
    if step == "refine:base":
        before, mix = None, [_dataset_ref(ref, spec, state) for ref in refinement.base]
    else:
        candidate = step.split(":")[1]
        if step.endswith(":retry"):
            if state.result(f"refine:{candidate}")["kept"]:
                return {"skipped": f"refine:{candidate} kept the candidate", "kept": False}
            data = state.result(f"{step}:data")
            added = data["outputs"][_split_ref(_candidate(spec, candidate).retry.dataset)[0]]
        else:
            added = _dataset_ref(_candidate(spec, candidate).dataset, spec, state)
        done = {name: state.result(name) for name in state.steps if state.done(name)}
        before = accepted(refinement, done)
        mix = [*before["mix"], added]
    model = spec.model_name(role)
    if context.store.has(model):  # trained by a run killed before it saved the step: its own mix
        ref = context.store.record(model)["lineage"]["datasets"][0]
    else:
        ref = register_mix(context.registry, f"{refinement.output}-trials", mix).ref
    trained = _train(spec.start, ref, refinement.train, model, spec, context)
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


def _refine_retry_data(
    candidate: str, spec: LoopSpec, state: LoopState, spec_dir: Path, context: LoopContext
) -> dict[str, Any]:
    """Refine a candidate that did not help (its retry pipeline, e.g. arbitrage over its prompts)."""
    if state.result(f"refine:{candidate}")["kept"]:
        return {"skipped": f"refine:{candidate} kept the candidate"}
    retry = _candidate(spec, candidate).retry
    assert retry is not None
    return _run_pipeline(_resolve(spec_dir, retry.pipeline), list(retry.set), context)


def _refine_mix(spec: LoopSpec, state: LoopState, context: LoopContext) -> dict[str, Any]:
    """Register the accepted mix as the refinement's output, for the experts."""
    from loop.refinement import accepted, register_mix

    assert spec.refinement is not None
    current = accepted(
        spec.refinement, {name: state.result(name) for name in state.steps if state.done(name)}
    )
    version = register_mix(context.registry, spec.refinement.output, current["mix"])
    return {
        "outputs": {spec.refinement.output: version.ref},
        "mix": current["mix"],
        "trained": current["model"],
    }


def _interpolate(spec: LoopSpec, polished: str, context: LoopContext) -> dict[str, Any]:
    """WARP's linear interpolation toward the start of polish: base + eta * (polished - base)."""
    from trainer.merging.schemes import merge_linear_to_store

    assert spec.polish is not None and spec.polish.interpolation is not None
    eta, base, name = spec.polish.interpolation, _merged_model(spec), spec.model_name("final")
    if not context.store.has(name):
        merge_linear_to_store(context.store, [polished, base], [eta, 1 - eta], name=name)
    return {"model": name, "experts": [polished, base], "weights": [eta, 1 - eta]}


def _merge(spec: LoopSpec, without: str | None, state: LoopState, context: LoopContext) -> dict[str, Any]:
    from trainer.merging.schemes import merge_linear_to_store

    assert spec.merge is not None
    experts = [e.name for e in spec.experts]
    weights = spec.merge.weights or [1.0 / len(experts)] * len(experts)
    if spec.merge.search is not None:
        if without is None:
            return _search(spec, weights, context)
        weights = state.result("merge")["weights"]  # leave-one-out around the searched soup
    if without is not None:
        kept = [i for i, name in enumerate(experts) if name != without]
        rest = sum(weights[i] for i in kept)
        experts, weights = [experts[i] for i in kept], [weights[i] / rest for i in kept]
    name = spec.model_name("soup" if without is None else f"without-{without}")
    if not context.store.has(name):
        merge_linear_to_store(
            context.store, [spec.model_name(e) for e in experts], weights, name=name, normalize=True
        )
    return {"model": name, "experts": experts, "weights": weights}


def _search(spec: LoopSpec, initial: list[float], context: LoopContext) -> dict[str, Any]:
    """The soup with weights searched on the dev splits of the experts' domains."""
    from loop.gates import PRIMARY_METRICS, primary
    from trainer.merging.config import Expert, SearchConfig
    from trainer.merging.search import run_search

    assert spec.merge is not None and spec.merge.search is not None
    search = spec.merge.search
    domains = sorted({e.domain for e in spec.experts})
    dev = spec.evaluation.model_copy(update={"suites": domains, "limit": search.limit, "split": "dev"})

    def dev_scores(model_path: Path) -> dict[str, float]:
        summary = context.evaluate(str(model_path), dev)
        return {domain: primary(summary, domain)[0] for domain in domains}

    name = spec.model_name("soup")
    if context.store.has(name):  # registered by a run killed before it saved the step
        return {"model": name, "weights": context.store.record(name)["lineage"]["merge"]["weights"]}
    config = SearchConfig(
        experts=[Expert(model=spec.model_name(e.name), domain=e.domain) for e in spec.experts],
        evaluator="loop.evaluation:evaluate_summary",  # recorded in lineage; called as dev_scores
        initial_weights=initial,
        rounds=search.rounds,
        candidates_per_round=search.candidates_per_round,
        seed=search.seed,
        output=name,
    )
    result = run_search(config, context.store, dev_scores, log=context.log)
    return {
        "model": name,
        "experts": [e.name for e in spec.experts],
        "weights": list(result.best.weights),
        "dev_scores": result.best.scores,
        "dev_metrics": {d: PRIMARY_METRICS[d] for d in domains},
        "evaluations": result.evaluations,
    }


def _evaluate(model: str, spec: LoopSpec, context: LoopContext) -> dict[str, Any]:
    return {"model": model, "suites": context.evaluate(model, spec.evaluation)}


def _summary(state: LoopState, role: str) -> Summary:
    return state.result(f"eval:{role}")["suites"]


def _gates(spec: LoopSpec, state: LoopState) -> dict[str, Any]:
    start = _summary(state, "start")
    gates: list[Gate] = []
    for expert in spec.experts:
        gates.append(expert_beats_start(expert.name, expert.domain, start, _summary(state, expert.name)))
    if spec.merge is not None:
        soup = _summary(state, "soup")
        for expert in spec.experts:
            gates.append(
                soup_keeps_gain(
                    expert.name,
                    expert.domain,
                    start,
                    _summary(state, expert.name),
                    soup,
                    spec.gates.soup_keeps,
                )
            )
    final = _summary(state, final_role(spec))
    gates += [final_at_least_start(suite, start, final) for suite in spec.evaluation.suites]
    failed = [gate for gate in gates if not gate.passed]
    if failed and spec.gates.enforce:
        raise LoopStepError("; ".join(f"{g.name}: {g.detail}" for g in failed))
    return {
        "final": final_model(spec),
        "gates": [{"name": g.name, "passed": g.passed, "detail": g.detail} for g in gates],
    }
