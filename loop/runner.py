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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loop.context import LoopContext, LoopStepError
from loop.data import polish_data, run_data
from loop.gates import Gate, Summary, expert_beats_start, final_at_least_start, soup_keeps_gain
from loop.names import final_model, final_role, leave_one_out, merged_model, polish_labels
from loop.refine_steps import refine_mix, refine_retry_data, refine_trial
from loop.refinement import trial_steps
from loop.spec import LoopSpec
from loop.state import LoopState, StepRecord, save_state
from loop.training import interpolate, merge, polish_train, prefer, train_expert


def step_names(spec: LoopSpec) -> list[str]:
    """The loop's steps, in the order they run."""
    return [name for name, _ in _plan(spec, LoopState(name=spec.name, spec={}, spec_dir="."), None)]


def run_loop(spec: LoopSpec, state: LoopState, context: LoopContext) -> LoopState:
    """Run every step not yet done, saving the state after each.

    Raises:
        LoopStepError: an evaluation measured another set than the suites now do, or a step
            failed (recorded in the state).
    """
    check_eval_sets(spec, state)
    for step, run in _plan(spec, state, context):
        if not state.done(step):
            _run_step(spec, state, context, step, run)
    return state


def run_step(spec: LoopSpec, state: LoopState, context: LoopContext, step: str) -> dict[str, Any]:
    """Run one step (as a job of the job system does), saving the state; its result.

    Raises:
        LoopStepError: a step before it is not done, an evaluation measured another set than the
            suites now do, or the step failed (recorded in the state).
    """
    check_eval_sets(spec, state)
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
        steps.append((f"data:{data.name}", lambda d=data: run_data(d, spec_dir, context)))
    if spec.refinement is not None:
        steps.append(("refine:base", lambda: refine_trial("refine:base", spec, state, context)))
        for step, candidate in trial_steps(spec.refinement):
            if step.endswith(":retry"):
                data = lambda c=candidate: refine_retry_data(c, spec, state, spec_dir, context)  # noqa: E731
                steps.append((f"{step}:data", data))
            steps.append((step, lambda s=step: refine_trial(s, spec, state, context)))
        steps.append(("refine:mix", lambda: refine_mix(spec, state, context)))
    steps.append(("eval:start", lambda: _evaluate(spec.start, spec, context)))
    for expert in spec.experts:
        for seed in expert.seeds or []:
            train = lambda e=expert, s=seed: train_expert(e, spec, state, context, seed=s)  # noqa: E731
            steps.append((f"expert:{expert.name}:seed-{seed}", train))
        steps.append((f"expert:{expert.name}", lambda e=expert: train_expert(e, spec, state, context)))
        if expert.preference is not None:
            steps.append((f"prefer:{expert.name}", lambda e=expert: prefer(e, spec, state, context)))
        steps.append(
            (f"eval:{expert.name}", lambda e=expert: _evaluate(spec.model_name(e.name), spec, context))
        )
    if spec.merge is not None:
        steps.append(("merge", lambda: merge(spec, None, state, context)))
        steps.append(("eval:soup", lambda: _evaluate(spec.model_name("soup"), spec, context)))
        if leave_one_out(spec):
            for expert in spec.experts:
                role = f"without-{expert.name}"
                steps.append((f"merge:{role}", lambda e=expert: merge(spec, e.name, state, context)))
                steps.append((f"eval:{role}", lambda r=role: _evaluate(spec.model_name(r), spec, context)))
    if spec.polish is not None:
        newest = merged_model(spec)
        for label, round_ in polish_labels(spec):
            if round_.pipeline is not None:
                data = lambda r=round_, m=newest: polish_data(r, m, spec_dir, context)  # noqa: E731
                steps.append((f"polish:{label}:data", data))
            train = lambda r=round_, x=label, m=newest: polish_train(r, x, m, spec, state, context)  # noqa: E731
            steps.append((f"polish:{label}", train))
            newest = spec.model_name(f"polish-{label}")
        steps.append(("eval:polished", lambda m=newest: _evaluate(m, spec, context)))
        if spec.polish.interpolation is not None:
            steps.append(("interpolate", lambda m=newest: interpolate(spec, m, context)))
            steps.append(("eval:final", lambda: _evaluate(spec.model_name("final"), spec, context)))
    steps.append(("gates", lambda: _gates(spec, state)))
    return steps


def _since(started: float) -> float:
    return round(time.monotonic() - started, 2)


def _evaluate(model: str, spec: LoopSpec, context: LoopContext) -> dict[str, Any]:
    return {
        "model": model,
        "suites": context.evaluate(model, spec.evaluation),
        "eval_sets": eval_set_identities(spec),
    }


def eval_set_identities(spec: LoopSpec) -> dict[str, str]:
    """Which items each suite of the loop's table measures (eval_sets.identity)."""
    import eval_sets

    return {suite: eval_sets.identity(suite, split=spec.evaluation.split) for suite in spec.evaluation.suites}


def check_eval_sets(spec: LoopSpec, state: LoopState) -> None:
    """Refuse to continue a loop whose finished evaluations measured other items than its suites
    measure now (a data file or a recorded split changed), or cannot say which (measured before
    steps recorded it): the table and the gates would compare numbers over different sets.

    Raises:
        LoopStepError: the first evaluation step that measured another or an unknown set.
    """
    finished = {step: record.result for step, record in state.steps.items()
                if step.startswith("eval:") and record.status == "done"}  # fmt: skip
    if not finished:
        return
    current = eval_set_identities(spec)
    for step, result in finished.items():
        if "eval_sets" not in result:
            raise LoopStepError(
                f"loop {spec.name}: step {step} was measured before loops recorded which items each "
                "suite measured, so it cannot be checked against the sets now: start a loop under "
                "another name"
            )
        for suite, measured in result["eval_sets"].items():
            if current.get(suite, measured) != measured:
                raise LoopStepError(
                    f"loop {spec.name}: step {step} measured {suite} as {measured}, and the set is "
                    f"now {current[suite]} (its files or its split changed); its numbers would not "
                    "compare with new ones: start a loop under another name"
                )


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
