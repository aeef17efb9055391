"""`assay loop`: data → experts → merge → evaluation → gates from one spec, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from assay.cli.common import console, open_model_store, open_registry
from assay.cli.output import JsonOption, emit_json, emit_table

if TYPE_CHECKING:
    from loop.context import LoopContext
    from loop.spec import LoopSpec
    from loop.state import LoopState

app = typer.Typer(help="Run the whole post-training loop from one spec.", no_args_is_help=True)


def _context() -> LoopContext:
    from assay.settings import assay_home
    from loop.context import LoopContext
    from loop.evaluation import evaluate_summary

    return LoopContext(
        registry=open_registry(),
        store=open_model_store(),
        home=assay_home(),
        evaluate=evaluate_summary,
        log=lambda line: console.print(line, highlight=False, soft_wrap=True),
    )


def _run(spec: LoopSpec, state: LoopState, context: LoopContext) -> None:
    from loop.runner import run_loop

    state = run_loop(spec, state, context)
    _print_state(spec, state)


def _pending_step_jobs(name: str) -> list[str]:
    """Ids of this loop's step jobs still queued or running."""
    import yaml

    from assay.cli.jobs import open_job_store
    from datagen.jobs.store import JobState
    from loop.job import JOB_KIND

    jobs = open_job_store().list([JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING])
    return [j.id for j in jobs if j.kind == JOB_KIND and yaml.safe_load(j.spec_text).get("loop") == name]


SpecArg = Annotated[Path, typer.Argument(help="Loop spec (YAML).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a field: KEY=VALUE.")]
PriorityOpt = Annotated[int, typer.Option(help="Priority of the step jobs (higher runs first).")]
CpusOpt = Annotated[
    float | None,
    typer.Option(help="CPUs each step job holds (default: all: steps train and evaluate on all)."),
]
MemOpt = Annotated[float, typer.Option("--memory-gb", help="Memory (GiB) each step job holds.")]


def _new_loop(spec_path: Path, set_: list[str] | None, context: LoopContext) -> tuple[LoopSpec, LoopState]:
    """Read and check a new loop's spec; its state, not yet saved."""
    from loop.check import check_loop
    from loop.spec import LoopSpecError, load_loop_spec
    from loop.state import LoopState, state_path

    spec, raw = load_loop_spec(spec_path, set_ or [])
    if state_path(context.home, spec.name).exists():
        raise LoopSpecError(
            f"loop {spec.name!r} already exists: `assay loop resume {spec.name}` continues it"
        )
    spec_dir = spec_path.resolve().parent
    check_loop(spec, spec_dir, context)
    return spec, LoopState(name=spec.name, spec=raw, spec_dir=str(spec_dir))


@app.command("run")
def run(
    spec_path: SpecArg,
    set_: SetOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the whole spec and list the steps; run nothing.")
    ] = False,
) -> None:
    """Check the whole spec, then run every step; a failed step can be resumed."""
    from loop.state import loop_lock, save_state

    context = _context()
    spec, state = _new_loop(spec_path, set_, context)
    if dry_run:
        from loop.runner import step_names

        console.print(f"loop {spec.name}: the spec checks out; steps: {', '.join(step_names(spec))}")
        return
    with loop_lock(context.home, spec.name):
        save_state(context.home, state)
        _run(spec, state, context)


@app.command("submit")
def submit(
    spec_path: SpecArg,
    set_: SetOpt = None,
    priority: PriorityOpt = 0,
    cpus: CpusOpt = None,
    memory_gb: MemOpt = 0,
) -> None:
    """Check the whole spec, then queue every step as a job (each after the one before) for
    `assay jobs worker`."""
    from loop.runner import step_names
    from loop.state import save_state

    context = _context()
    spec, state = _new_loop(spec_path, set_, context)
    save_state(context.home, state)
    _submit(spec, str(spec_path.resolve()), step_names(spec), priority, cpus, memory_gb)


def _submit(
    spec: LoopSpec, spec_path: str, steps: list[str], priority: int, cpus: float | None, memory_gb: float
) -> None:
    from assay.cli.jobs import open_job_store
    from datagen.jobs.store import Resources
    from datagen.jobs.worker import check_fits, machine_resources
    from loop.job import submit_steps

    if not steps:
        console.print(f"loop {spec.name}: every step is done")
        return
    machine = machine_resources()
    resources = Resources(cpus=cpus if cpus is not None else machine.cpus, memory_gb=memory_gb)
    check_fits(resources, machine)
    jobs = submit_steps(open_job_store(), spec_path, spec.name, steps, priority=priority, resources=resources)
    console.print(f"loop {spec.name}: queued {len(jobs)} step jobs, {jobs[0].id} ... {jobs[-1].id}; "
                  "run them with `assay jobs worker`", highlight=False, soft_wrap=True)  # fmt: skip


@app.command("resume")
def resume(
    name: Annotated[str, typer.Argument(help="Loop name.")],
    jobs: Annotated[bool, typer.Option("--jobs", help="Queue the steps not done as jobs instead.")] = False,
    priority: PriorityOpt = 0,
    cpus: CpusOpt = None,
    memory_gb: MemOpt = 0,
) -> None:
    """Continue a loop from its first step not done (its frozen spec, not the file's)."""
    from loop.check import check_loop
    from loop.runner import check_eval_sets, step_names
    from loop.spec import LoopSpec, LoopSpecError
    from loop.state import load_state, loop_lock

    context = _context()
    pending = _pending_step_jobs(name)
    if pending:
        raise LoopSpecError(f"loop {name!r} has step jobs queued or running ({pending[0]} ...); "
                            "`assay jobs worker` runs them, `assay jobs cancel` stops them")  # fmt: skip
    with loop_lock(context.home, name):
        state = load_state(context.home, name)
        spec = LoopSpec.model_validate(state.spec)
        check_loop(spec, Path(state.spec_dir), context, resuming=True)
        check_eval_sets(spec, state)
        if jobs:
            left = [step for step in step_names(spec) if not state.done(step)]
            _submit(spec, state.spec_dir, left, priority, cpus, memory_gb)
            return
        _run(spec, state, context)


@app.command("extend")
def extend(
    name: Annotated[str, typer.Argument(help="Loop name.")],
    spec_path: SpecArg,
    set_: SetOpt = None,
) -> None:
    """Continue a loop under a spec that adds polish rounds or changes its gates: the steps
    before polish keep their results; polish, its evaluations and the gates run."""
    from loop.check import check_loop
    from loop.extend import extend_state
    from loop.runner import check_eval_sets
    from loop.spec import LoopSpecError, load_loop_spec
    from loop.state import load_state, loop_lock, save_state

    context = _context()
    if _pending_step_jobs(name):
        raise LoopSpecError(f"loop {name!r} has step jobs queued or running; wait for them or cancel them")
    spec, raw = load_loop_spec(spec_path, set_ or [])
    with loop_lock(context.home, name):
        state, new_models = extend_state(
            load_state(context.home, name), spec, raw, spec_path.resolve().parent
        )
        stored = [model for model in new_models if context.store.has(model)]
        if stored:
            raise LoopSpecError(
                f"a model named {stored[0]!r} is already stored: rename the loop or remove it"
            )
        check_loop(spec, Path(state.spec_dir), context, resuming=True)
        check_eval_sets(spec, state)
        save_state(context.home, state)
        _run(spec, state, context)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Loop name.")], as_json: JsonOption = False) -> None:
    """Each step's state and wall time, the evaluation table and the gates."""
    from assay.settings import assay_home
    from loop.spec import LoopSpec
    from loop.state import load_state

    state = load_state(assay_home(), name)
    if as_json:
        emit_json(
            {"name": state.name, "spec": state.spec, "steps": {k: vars(v) for k, v in state.steps.items()}}
        )
        return
    _print_state(LoopSpec.model_validate(state.spec), state)


def _print_state(spec: LoopSpec, state: LoopState) -> None:
    from loop.gates import PRIMARY_METRICS

    emit_table(
        f"loop {state.name}",
        ("step", "state", "wall s", "result"),
        [
            [step, record.status, f"{record.wall_s:.0f}", record.error or _short(record.result)]
            for step, record in state.steps.items()
        ],
    )
    evaluated = {step[5:]: record.result["suites"] for step, record in state.steps.items()
                 if step.startswith("eval:") and record.status == "done"}  # fmt: skip
    if evaluated:
        suites = [s for s in spec.evaluation.suites if all(s in summary for summary in evaluated.values())]
        rows = []
        for role, summary in evaluated.items():
            cells = []
            for suite in suites:
                metric = summary[suite][PRIMARY_METRICS[suite]]
                cells.append(f"{metric['value']:.3f} ± {metric['stderr']:.3f}")
            rows.append([role, *cells])
        emit_table(
            "evaluation (primary metric ± stderr)",
            ("model", *(f"{s} {PRIMARY_METRICS[s]}" for s in suites)),
            rows,
        )
    gates = state.steps.get("gates")
    if gates is not None and gates.status == "done":
        emit_table(
            f"gates (final model: {gates.result['final']})",
            ("gate", "passed", "detail"),
            [[g["name"], "yes" if g["passed"] else "NO", g["detail"]] for g in gates.result["gates"]],
        )


def _short(result: dict) -> str:
    if "model" in result:
        return str(result["model"])
    if "outputs" in result:
        return ", ".join(result["outputs"].values())
    if "final" in result:
        failed = sum(not g["passed"] for g in result["gates"])
        return f"{failed} of {len(result['gates'])} gates failed"
    return ""
