"""A loop spec is refused, in one line and before any step, when it names what cannot run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loop.spec import LoopSpecError, load_loop_spec

ASSAY = str(Path(sys.executable).parent / "assay")


def write_spec(folder: Path, **fields: object) -> Path:
    spec = {
        "name": "tiny-loop",
        "start": "base-model",
        "evaluation": {"suites": ["ifeval", "xstest"]},
        "experts": [{"name": "if", "domain": "ifeval", "dataset": "sft-data@1"}],
    } | fields
    path = folder / "loop.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"evaluation": {"suites": ["ifeval", "bleu"]}}, "unknown suite 'bleu'"),
        (
            {"experts": [{"name": "if", "domain": "mgsm", "dataset": "d@1"}]},
            "'mgsm' is not among evaluation.suites",
        ),
        (
            {"experts": [{"name": "if", "domain": "ifeval", "dataset": "d@1", "train": {"model": "x"}}]},
            "may not set model",
        ),
        (
            {"experts": [{"name": "a", "domain": "ifeval", "dataset": "d@1"}], "merge": {}},
            "merge needs at least two experts",
        ),
        ({"name": "Bad Name"}, "lowercase letters"),
        ({"experts": [{"name": "a", "domain": "ifeval", "dataset": "d@1"}] * 2}, "expert names repeat: a"),
        (
            {"experts": [{"name": "start", "domain": "ifeval", "dataset": "d@1"}]},
            "two steps would both be 'eval:start'",
        ),
        (
            {
                "experts": [
                    {"name": "a", "domain": "ifeval", "dataset": "d@1", "seeds": [1, 2]},
                    {"name": "a-seed-1", "domain": "xstest", "dataset": "d@1"},
                ],
                "merge": {},
            },
            "two models would both be 'tiny-loop-a-seed-1'",
        ),
        ({"experts": [{"name": "If", "domain": "ifeval", "dataset": "d@1"}]}, "experts: 'If': lowercase"),
        (
            {
                "experts": [
                    {"name": "a", "domain": "ifeval", "dataset": "d@1"},
                    {"name": "b", "domain": "xstest", "dataset": "d@1"},
                ],
                "polish": {"rounds": [{"name": "r", "dataset": "d@1"}]},
            },
            "polish starts from the soup",
        ),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(LoopSpecError, match=message) as caught:
        load_loop_spec(write_spec(tmp_path, **fields))
    assert str(tmp_path / "loop.yaml") in str(caught.value)


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    spec, raw = load_loop_spec(write_spec(tmp_path), ["evaluation.limit=5", "gates.enforce=true"])
    assert spec.evaluation.limit == 5 and spec.gates.enforce
    assert raw["evaluation"]["limit"] == 5


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed `assay` command (its entry point turns user errors into exit 2)."""
    env = os.environ | {"ASSAY_HOME": str(tmp_path / "assay-home")}
    command = [ASSAY, "--registry", str(tmp_path / "registry"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_unknown_start_model_is_refused_before_any_step(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "loop", "run", str(write_spec(tmp_path)))
    assert result.returncode == 2
    assert "base-model" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "assay-home" / "loops").exists()  # nothing ran, no state written


def test_unknown_dataset_is_refused_before_any_step(
    tmp_path: Path, tiny_model: Path, shared_data: Path
) -> None:
    spec = write_spec(tmp_path, start=str(tiny_model))
    result = run_cli(tmp_path, "loop", "run", str(spec))
    assert result.returncode == 2, result.stderr
    assert "experts.if.dataset" in result.stderr and "sft-data" in result.stderr
    assert not (tmp_path / "assay-home" / "loops").exists()


def test_resume_of_an_unknown_loop_names_the_known_ones(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "loop", "resume", "nope")
    assert result.returncode == 2
    assert "no loop named 'nope'" in result.stderr


def test_dry_run_checks_everything_and_writes_nothing(
    tmp_path: Path, tiny_model: Path, shared_data: Path
) -> None:
    import pyarrow as pa

    from datasets_registry import Registry
    from datasets_registry.kinds import MESSAGES_TYPE

    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    table = pa.table({"messages": pa.array([turn], MESSAGES_TYPE), "id": ["a"]})
    Registry(tmp_path / "registry").write("sft-data", table, kind="sft")
    spec = write_spec(tmp_path, start=str(tiny_model))
    result = run_cli(tmp_path, "loop", "run", str(spec), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "steps: eval:start, expert:if, eval:if, gates" in " ".join(result.stdout.split())
    assert not (tmp_path / "assay-home" / "loops").exists()


@pytest.mark.parametrize("experts", [2, 3])
def test_leave_one_out_merges_only_where_the_rest_is_a_soup(tmp_path: Path, experts: int) -> None:
    """With two experts the soup without one is the other expert, already evaluated: no step."""
    from loop.runner import step_names

    named = [{"name": n, "domain": "ifeval", "dataset": "d@1"} for n in ["a", "b", "c"][:experts]]
    spec, _ = load_loop_spec(write_spec(tmp_path, experts=named, merge={"leave_one_out": True}))
    without = [step for step in step_names(spec) if "without-" in step]
    if experts == 2:
        assert without == []
    else:
        assert without == [f"{kind}:without-{n}" for n in "abc" for kind in ("merge", "eval")]


class SuiteWithoutDevSplit:
    """A suite measured on its test split only (its constructor takes no `split`), as MGSM and
    XSTest were before their dev splits: registered in place of one to see it refused."""

    name = "mgsm"

    def __init__(self, *, max_tokens: int | None = None, data_dir: Path | None = None) -> None:
        self.max_tokens = max_tokens

    def run(self, generator: object, *, limit: int | None = None) -> None:
        raise AssertionError("a suite without a dev split must be refused before it runs")


def test_merge_search_and_refinement_take_every_suite_and_refuse_one_without_a_dev_split(
    tmp_path: Path, tiny_model: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every suite has a dev split (HumanEval: MBPP's validation problems; MGSM and XSTest: a
    seeded fifth held out of the set), so an expert of any domain takes part in the weight search
    and any suite can decide in refinement; a suite without one is still refused before any step."""
    import pyarrow as pa

    from datasets_registry import Registry
    from datasets_registry.kinds import MESSAGES_TYPE
    from evals.suites import SUITES
    from loop.check import check_loop
    from loop.context import LoopContext
    from model_store import ModelStore

    registry = Registry(tmp_path / "registry")
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    registry.write(
        "sft-data", pa.table({"messages": pa.array([turn], MESSAGES_TYPE), "id": ["a"]}), kind="sft"
    )
    context = LoopContext(
        registry=registry, store=ModelStore(tmp_path / "models"), home=tmp_path / "home",
        evaluate=lambda model, evaluation: {}, log=lambda _: None,
    )  # fmt: skip

    def spec(domain: str, critical: list[str] | None = None):  # noqa: ANN202
        experts = [
            {"name": "if", "domain": "ifeval", "dataset": "sft-data@1"},
            {"name": "other", "domain": domain, "dataset": "sft-data@1"},
        ]
        fields: dict[str, object] = {"merge": {"search": {"rounds": 1}}}
        if critical:
            fields["refinement"] = {
                "output": "mix", "base": ["sft-data@1"], "critical": critical,
                "candidates": [{"name": "c", "dataset": "sft-data@1"}],
            }  # fmt: skip
        evaluation = {"suites": ["ifeval", "humaneval", "mgsm", "xstest"]}
        path = write_spec(tmp_path, start=str(tiny_model), evaluation=evaluation, experts=experts, **fields)
        return load_loop_spec(path)[0]

    for domain in ("humaneval", "mgsm", "xstest"):  # each refused with "has no dev split" before
        check_loop(spec(domain), tmp_path, context)
    check_loop(spec("ifeval", critical=["humaneval", "mgsm", "xstest"]), tmp_path, context)

    monkeypatch.setitem(SUITES, "mgsm", SuiteWithoutDevSplit)
    with pytest.raises(LoopSpecError, match="suite 'mgsm' .* no dev split"):
        check_loop(spec("mgsm"), tmp_path, context)
    with pytest.raises(LoopSpecError, match="refinement.critical: suite 'mgsm' has no dev split"):
        check_loop(spec("ifeval", critical=["xstest", "mgsm"]), tmp_path, context)


def test_the_spec_in_the_docs_is_a_valid_loop_spec() -> None:
    import re

    from loop.spec import LoopSpec

    text = (Path(__file__).resolve().parents[2] / "docs" / "loop.md").read_text()
    block = re.search(r"## The spec\n\n```yaml\n(.*?)```", text, re.S)
    assert block is not None, "docs/loop.md lost its spec block"
    spec = LoopSpec.model_validate(yaml.safe_load(block.group(1)))
    assert spec.refinement and spec.polish and spec.merge and spec.experts[0].preference


@pytest.mark.parametrize(
    "example", sorted((Path(__file__).resolve().parents[2] / "examples" / "loop").glob("*.yaml"))
)
def test_example_loops_are_valid_and_their_pipelines_load(example: Path) -> None:
    from loop.check import data_outputs
    from loop.runner import step_names

    spec, _ = load_loop_spec(example)
    produced = data_outputs(spec, example.parent)  # every data step's pipeline spec loads
    assert set(produced) >= {"ifeval-sft", "verified-code-sft"}
    assert step_names(spec)[-1] == "gates"


def test_a_loop_runs_in_one_process_at_a_time(tmp_path: Path) -> None:
    from loop.state import loop_lock

    with loop_lock(tmp_path, "busy"):
        with pytest.raises(LoopSpecError, match="'busy' is running in another process"):
            with loop_lock(tmp_path, "busy"):
                pass
    with loop_lock(tmp_path, "busy"):  # released
        pass


def test_a_dev_evaluation_of_a_suite_without_one_is_refused(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evals.base import EvalError
    from evals.suites import SUITES
    from loop.evaluation import evaluate_summary
    from loop.spec import EvaluationSpec

    monkeypatch.setitem(SUITES, "mgsm", SuiteWithoutDevSplit)  # every real suite has a dev split
    with pytest.raises(EvalError, match="suite 'mgsm' has no dev split"):  # never its test split
        evaluate_summary(str(tiny_model), EvaluationSpec(suites=["ifeval", "mgsm"], split="dev", limit=1))
