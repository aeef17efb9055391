"""`assay loop`: data → experts → merge → evaluation → gates from one spec, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from assay.cli.common import console, open_model_store, open_registry
from assay.cli.output import JsonOption, emit_json, emit_table

if TYPE_CHECKING:
    from loop.runner import LoopContext
    from loop.spec import LoopSpec
    from loop.state import LoopState

app = typer.Typer(help="Run the whole post-training loop from one spec.", no_args_is_help=True)


def _context() -> LoopContext:
    from assay.settings import assay_home
    from loop.evaluation import evaluate_summary
    from loop.runner import LoopContext

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


@app.command("run")
def run(
    spec_path: Annotated[Path, typer.Argument(help="Loop spec (YAML).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: KEY=VALUE.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the whole spec and list the steps; run nothing.")
    ] = False,
) -> None:
    """Check the whole spec, then run every step; a failed step can be resumed."""
    from loop.runner import check_loop
    from loop.spec import LoopSpecError, load_loop_spec
    from loop.state import LoopState, save_state, state_path

    spec, raw = load_loop_spec(spec_path, set_ or [])
    context = _context()
    if state_path(context.home, spec.name).exists():
        raise LoopSpecError(
            f"loop {spec.name!r} already exists: `assay loop resume {spec.name}` continues it"
        )
    spec_dir = spec_path.resolve().parent
    check_loop(spec, spec_dir, context)
    if dry_run:
        from loop.runner import step_names

        console.print(f"loop {spec.name}: the spec checks out; steps: {', '.join(step_names(spec))}")
        return
    state = LoopState(name=spec.name, spec=raw, spec_dir=str(spec_dir))
    save_state(context.home, state)
    _run(spec, state, context)


@app.command("resume")
def resume(name: Annotated[str, typer.Argument(help="Loop name.")]) -> None:
    """Continue a loop from its first step not done (its frozen spec, not the file's)."""
    from loop.runner import check_loop
    from loop.spec import LoopSpec
    from loop.state import load_state

    context = _context()
    state = load_state(context.home, name)
    spec = LoopSpec.model_validate(state.spec)
    check_loop(spec, Path(state.spec_dir), context, resuming=True)
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
