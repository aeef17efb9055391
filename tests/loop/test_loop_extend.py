"""`assay loop extend`: a finished loop continued with polish rounds keeps every earlier result
and runs only polish, its evaluations and the gates; other changes are refused."""

from pathlib import Path

import pytest
import yaml
from test_loop_run import context, register_pairs, register_sft
from typer.testing import CliRunner

from assay.cli.main import app
from datasets_registry import Registry
from loop.check import check_loop
from loop.evaluation import evaluate_summary
from loop.runner import run_loop
from loop.spec import EvaluationSpec, load_loop_spec
from loop.state import LoopState, load_state
from model_store import ModelStore

TINY_TRAIN = {"max_steps": 1, "max_length": 256, "micro_batch_size": 2, "torch_threads": 1}


def write_spec(path: Path, model: Path, sft: str, **sections: object) -> Path:
    spec = {
        "name": "tiny-loop",
        "start": str(model),
        "evaluation": {"suites": ["ifeval"], "limit": 1, "max_tokens": 4},
        "experts": [{"name": "a", "domain": "ifeval", "dataset": sft, "train": TINY_TRAIN}],
        **sections,
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def extend(registry: Registry, name: str, spec: Path) -> str:
    result = CliRunner().invoke(app, ["--registry", str(registry.root), "loop", "extend", name, str(spec)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.output


def test_extending_a_finished_loop_runs_only_polish_and_the_gates(
    tmp_path: Path, tiny_model: Path, registry: Registry, shared_data: Path
) -> None:
    home = tmp_path / "assay-home"  # the CLI's $ASSAY_HOME (tests/conftest.py)
    store = ModelStore(home / "models")
    sft = register_sft(registry, "tiny-sft", "A full answer.")
    spec, raw = load_loop_spec(write_spec(tmp_path / "loop.yaml", tiny_model, sft))
    ctx = context(registry, store, home)
    check_loop(spec, tmp_path, ctx)
    run_loop(spec, LoopState(name=spec.name, spec=raw, spec_dir=str(tmp_path)), ctx)
    before = load_state(home, "tiny-loop")
    assert list(before.steps) == ["eval:start", "expert:a", "eval:a", "gates"]
    assert before.result("gates")["final"] == "tiny-loop-a"
    trained = store.record("tiny-loop-a")["created_at"]

    # Another change than polish or gates is refused, and the state is left as it was.
    changed = write_spec(
        tmp_path / "changed.yaml", tiny_model, sft, evaluation={"suites": ["ifeval"], "limit": 2}
    )
    with pytest.raises(
        Exception, match="may change only polish and gates, and the spec changes 'evaluation'"
    ):
        extend(registry, "tiny-loop", changed)
    assert load_state(home, "tiny-loop").steps.keys() == before.steps.keys()

    # Nor may the training threshold change once a model trained under it, nor the folder move.
    stricter = write_spec(tmp_path / "stricter.yaml", tiny_model, sft, gates={"max_contamination": 0.5})
    with pytest.raises(Exception, match="step expert:a trained under gates.max_contamination"):
        extend(registry, "tiny-loop", stricter)
    (tmp_path / "elsewhere").mkdir()
    moved = write_spec(tmp_path / "elsewhere" / "loop.yaml", tiny_model, sft)
    with pytest.raises(Exception, match="the spec must lie in the loop's folder"):
        extend(registry, "tiny-loop", moved)

    pairs = register_pairs(registry)
    polish = {
        "interpolation": 0.5,
        "rounds": [{"name": "dpo", "dataset": pairs, "train": TINY_TRAIN | {"method": "dpo"}}],
    }
    longer = write_spec(tmp_path / "longer.yaml", tiny_model, sft, polish=polish)
    evaluated: list[str] = []
    original = evaluate_summary

    def recording(model: str, evaluation: EvaluationSpec) -> dict:
        evaluated.append(model)
        return original(model, evaluation)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("loop.evaluation.evaluate_summary", recording)
        extend(registry, "tiny-loop", longer)
    after = load_state(home, "tiny-loop")
    assert list(after.steps) == [
        "eval:start", "expert:a", "eval:a",
        "polish:dpo", "eval:polished", "interpolate", "eval:final", "gates",
    ]  # fmt: skip
    assert all(record.status == "done" for record in after.steps.values())
    assert evaluated == ["tiny-loop-polish-dpo", "tiny-loop-final"]  # start and a: not evaluated again
    assert store.record("tiny-loop-a")["created_at"] == trained  # the expert is not retrained
    assert after.result("eval:start") == before.result("eval:start")
    assert after.result("polish:dpo")["base"] == "tiny-loop-a"
    assert after.result("gates")["final"] == "tiny-loop-final"
    assert after.spec["polish"] == polish  # the frozen spec is the new one

    # Polish cannot change once a polish step is done (its model would not match the spec).
    other = write_spec(tmp_path / "other.yaml", tiny_model, sft, polish=polish | {"interpolation": 0.3})
    with pytest.raises(Exception, match="its polish step polish:dpo is done"):
        extend(registry, "tiny-loop", other)


def test_a_loop_whose_evaluation_set_changed_is_not_continued(
    tmp_path: Path, tiny_model: Path, registry: Registry, shared_data: Path
) -> None:
    import eval_sets
    from loop.context import LoopStepError
    from loop.runner import run_step
    from loop.state import save_state

    home = tmp_path / "assay-home"
    store = ModelStore(home / "models")
    sft = register_sft(registry, "tiny-sft", "A full answer.")
    spec, raw = load_loop_spec(write_spec(tmp_path / "loop.yaml", tiny_model, sft))
    ctx = context(registry, store, home)
    state = LoopState(name=spec.name, spec=raw, spec_dir=str(tmp_path))
    run_step(spec, state, ctx, "eval:start")
    assert state.result("eval:start")["eval_sets"] == {"ifeval": eval_sets.identity("ifeval")}

    # As if ifeval's files or its recorded split had changed since eval:start measured it.
    state.steps["eval:start"].result["eval_sets"]["ifeval"] = "ifeval#sha256=0000000000000000"
    save_state(home, state)
    with pytest.raises(LoopStepError, match="step eval:start measured ifeval as ifeval#sha256=0000"):
        run_loop(spec, load_state(home, "tiny-loop"), ctx)
    with pytest.raises(LoopStepError, match="start a loop under another name"):
        run_step(spec, load_state(home, "tiny-loop"), ctx, "expert:a")
    # A step measured before loops recorded their sets cannot be checked: refused as well.
    del state.steps["eval:start"].result["eval_sets"]
    save_state(home, state)
    with pytest.raises(LoopStepError, match="step eval:start was measured before loops recorded"):
        run_loop(spec, load_state(home, "tiny-loop"), ctx)
    assert not store.has("tiny-loop-a")  # nothing ran
