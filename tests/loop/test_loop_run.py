"""The loop end to end on a tiny random model: data → two experts → soup → evaluation → gates,
and a loop that fails half-way resumes without redoing its finished steps."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from assay.cli.main import app
from datasets_registry import Registry
from loop.check import check_loop
from loop.context import LoopContext, LoopStepError
from loop.evaluation import evaluate_summary
from loop.runner import run_loop
from loop.spec import EvaluationSpec, LoopSpecError, load_loop_spec
from loop.state import LoopState, load_state
from model_store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "datagen" / "seeds" / "ifeval_multilingual.jsonl"


def write_loop(tmp_path: Path, model: Path) -> Path:
    rows = [json.loads(line) for line in SEEDS.read_text().splitlines()[:6]]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    (tmp_path / "t.j2").write_text("{{ prompt }}\n")
    pipeline = {
        "name": "tiny-bon",
        "source": {"path": "rows.jsonl"},
        "stages": [
            {"type": "render", "name": "render", "template": "t.j2"},
            {"type": "generate", "name": "generate",
             "engine": {"model": str(model), "batch_size": 6, "torch_threads": 1},
             "sampling": {"n": 2, "temperature": [0.5, 1.0], "max_tokens": 8}},
            {"type": "ifeval_verify", "name": "verify"},
            {"type": "best_of_n", "name": "select"},
        ],
        "outputs": [{"dataset": "tiny-sft", "kind": "sft"}],
    }  # fmt: skip
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, allow_unicode=True))
    train = {"max_steps": 2, "max_length": 256, "micro_batch_size": 2, "torch_threads": 1}
    loop = {
        "name": "tiny-loop",
        "start": str(model),
        "evaluation": {"suites": ["ifeval", "xstest"], "limit": 2, "max_tokens": 8},
        "data": [{"name": "bon", "pipeline": "pipeline.yaml"}],
        "experts": [
            {"name": "a", "domain": "ifeval", "dataset": "tiny-sft@latest", "train": train},
            {"name": "b", "domain": "xstest", "dataset": "tiny-sft@latest", "train": train | {"seed": 1}},
        ],
        "merge": {},
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(loop))
    return path


def context(registry: Registry, store: ModelStore, home: Path, evaluate=evaluate_summary) -> LoopContext:  # noqa: ANN001
    return LoopContext(registry=registry, store=store, home=home, evaluate=evaluate, log=lambda _: None)


def test_a_loop_runs_end_to_end_and_resumes_after_a_failed_step(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None, shared_data: Path
) -> None:
    home = tmp_path / "assay-home"
    store = ModelStore(home / "models")
    spec_path = write_loop(tmp_path, tiny_model)
    spec, raw = load_loop_spec(spec_path)
    calls: list[str] = []

    def failing_on_b(model: str, evaluation: EvaluationSpec) -> dict:
        calls.append(model)
        if model == "tiny-loop-b":
            raise RuntimeError("the evaluation machine went away")
        return evaluate_summary(model, evaluation)

    check_loop(spec, tmp_path, context(registry, store, home))
    state = LoopState(name=spec.name, spec=raw, spec_dir=str(tmp_path))
    with pytest.raises(LoopStepError, match="step eval:b failed: the evaluation machine went away"):
        run_loop(spec, state, context(registry, store, home, failing_on_b))
    saved = load_state(home, "tiny-loop")
    assert [s for s, r in saved.steps.items() if r.status == "done"] == [
        "data:bon", "eval:start", "expert:a", "eval:a", "expert:b",
    ]  # fmt: skip
    assert saved.steps["eval:b"].status == "failed"
    trained_a = store.record("tiny-loop-a")["created_at"]

    # Resume (as `assay loop resume` does): only the failed step and those after it run.
    resumed: list[str] = []

    def recording(model: str, evaluation: EvaluationSpec) -> dict:
        resumed.append(model)
        return evaluate_summary(model, evaluation)

    check_loop(spec, tmp_path, context(registry, store, home), resuming=True)
    state = run_loop(spec, saved, context(registry, store, home, recording))
    assert all(record.status == "done" for record in state.steps.values())
    assert resumed == ["tiny-loop-b", "tiny-loop-soup"]  # start, a: not evaluated again
    assert [v.version for v in registry.versions("tiny-sft")] == [1]  # the data job ran once
    assert store.record("tiny-loop-a")["created_at"] == trained_a  # expert a not retrained

    sft_ref = state.result("data:bon")["outputs"]["tiny-sft"]
    assert store.record("tiny-loop-a")["lineage"]["datasets"] == [sft_ref]
    soup_lineage = store.record("tiny-loop-soup")["lineage"]
    assert sft_ref in soup_lineage["datasets"]  # the soup's lineage reaches the loop's data
    gates = state.result("gates")
    assert gates["final"] == "tiny-loop-soup"
    names = [g["name"] for g in gates["gates"]]
    assert "expert a beats start on ifeval" in names and "final at least start on xstest" in names
    for suite in ("ifeval", "xstest"):
        metric = state.result("eval:soup")["suites"][suite]
        assert all({"value", "stderr", "n"} <= set(m) for m in metric.values())
    assert store.evals("tiny-loop-soup"), "the soup's evaluation is stored with the model"

    shown = CliRunner().invoke(app, ["--registry", str(registry.root), "loop", "show", "tiny-loop"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()  # tab-separated tables when not on a terminal
    assert any(line.startswith("soup\t") for line in lines)  # the evaluation table
    assert any(line.startswith("soup keeps a's gain on ifeval\t") for line in lines)  # the gates


def test_an_expert_is_not_trained_on_data_that_overlaps_an_evaluation_set(
    tmp_path: Path, tiny_model: Path, registry: Registry, shared_data: Path
) -> None:
    import pyarrow as pa

    from datasets_registry.kinds import MESSAGES_TYPE
    from eval_sets import load_humaneval

    leaked = load_humaneval(data_dir=shared_data)[0]
    clean = "Write a function that reverses the words of a sentence, keeping punctuation in place."
    messages = [
        [{"role": "user", "content": text}, {"role": "assistant", "content": "def f(): pass"}]
        for text in (leaked.prompt, clean)
    ]
    table = pa.table({"messages": pa.array(messages, MESSAGES_TYPE), "id": ["leaked", "clean"]})
    registry.write("leaky-sft", table, kind="sft")
    home = tmp_path / "assay-home"
    store = ModelStore(home / "models")
    spec_path = tmp_path / "loop.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "leaky-loop",
        "start": str(tiny_model),
        "evaluation": {"suites": ["xstest"], "limit": 1, "max_tokens": 4},
        "experts": [{"name": "a", "domain": "xstest", "dataset": "leaky-sft@1", "train": {"max_steps": 1}}],
    }))  # fmt: skip
    spec, raw = load_loop_spec(spec_path)
    state = LoopState(name=spec.name, spec=raw, spec_dir=str(tmp_path))
    with pytest.raises(LoopStepError, match=r"leaky-sft@1: 1 of 2 rows \(50.0%\) overlap.*humaneval"):
        run_loop(spec, state, context(registry, store, home))
    assert not store.has("leaky-loop-a")
    assert load_state(home, "leaky-loop").steps["expert:a"].status == "failed"


def test_an_untrusted_reward_model_is_replaced_by_the_fallback_selection(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None, shared_data: Path
) -> None:
    import pyarrow as pa
    from transformers import AutoTokenizer

    from datasets_registry.kinds import MESSAGES_TYPE
    from reward_model.model import RewardModel

    rm_folder = tmp_path / "random-rm"  # untrained: no better than reply length
    RewardModel.from_backbone(tiny_model, seed=0).save(rm_folder, AutoTokenizer.from_pretrained(tiny_model))
    turn = [{"role": "user", "content": "Say something kind."}]
    pairs = [  # the preferred reply is always the longer one: "longer wins" is right on every pair
        {"id": f"p{i}", "prompt": turn,
         "chosen": [{"role": "assistant", "content": "You did a really wonderful job today, thank you " * 2}],
         "rejected": [{"role": "assistant", "content": "ok" + "!" * (i % 3)}]}
        for i in range(12)
    ]  # fmt: skip
    schema = pa.schema([("id", pa.string()), ("prompt", MESSAGES_TYPE), ("chosen", MESSAGES_TYPE),
                        ("rejected", MESSAGES_TYPE)])  # fmt: skip
    registry.write("heldout-prefs", pa.Table.from_pylist(pairs, schema=schema), kind="preference")
    spec_path = write_loop(tmp_path, tiny_model)
    spec, raw = load_loop_spec(
        spec_path,
        [
            "data.0.arbiter.model=" + str(rm_folder),
            "data.0.arbiter.heldout=heldout-prefs@1",
            "data.0.arbiter.fallback=[stages.1.sampling.max_tokens=4]",
            "experts=[{name: a, domain: ifeval, dataset: tiny-sft@latest,"
            " train: {max_steps: 1, max_length: 256}}]",
            "evaluation.suites=[ifeval]",
            "merge=null",
        ],
    )
    home = tmp_path / "assay-home"
    ctx = context(registry, ModelStore(home / "models"), home)
    check_loop(spec, tmp_path, ctx)
    state = run_loop(spec, LoopState(name=spec.name, spec=raw, spec_dir=str(tmp_path)), ctx)
    data = state.result("data:bon")
    assert data["arbiter"]["trusted"] is False
    assert data["arbiter"]["longer_wins"]["value"] == 1.0
    assert data["overrides"] == ["stages.1.sampling.max_tokens=4"]
    lineage = registry.open(data["outputs"]["tiny-sft"]).info.lineage
    assert lineage.spec["stages"][1]["sampling"]["max_tokens"] == 4  # the job ran with the fallback


def test_soup_weights_are_searched_on_dev_splits_only(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None, shared_data: Path
) -> None:
    spec_path = write_loop(tmp_path, tiny_model)
    home = tmp_path / "assay-home"
    ctx = context(registry, ModelStore(home / "models"), home)
    # XSTest has a dev split (a seeded fifth of every type), so its expert takes part in a search.
    check_loop(load_loop_spec(spec_path, ["merge.search={rounds: 1}"])[0], tmp_path, ctx)

    spec, raw = load_loop_spec(
        spec_path,
        ["experts.1.domain=ifeval", "evaluation.suites=[ifeval]",
         "merge.search={rounds: 1, candidates_per_round: 1, limit: 2}"],
    )  # fmt: skip
    splits: list[tuple[str, str]] = []

    def recording(model: str, evaluation: EvaluationSpec) -> dict:
        splits.append((model, evaluation.split))
        return evaluate_summary(model, evaluation)

    ctx = context(registry, ModelStore(home / "models"), home, recording)
    check_loop(spec, tmp_path, ctx)
    state = run_loop(spec, LoopState(name=spec.name, spec=raw, spec_dir=str(tmp_path)), ctx)
    merge = state.result("merge")
    assert abs(sum(merge["weights"]) - 1.0) < 1e-6 and set(merge["dev_scores"]) == {"ifeval"}
    dev = [model for model, split in splits if split == "dev"]
    assert len(dev) == merge["evaluations"] + 2  # each candidate, and each expert's target, on dev
    reported = [model for model, split in splits if split == "test"]
    assert reported == [str(tiny_model), "tiny-loop-a", "tiny-loop-b", "tiny-loop-soup"]
    stored = ModelStore(home / "models").record("tiny-loop-soup")["lineage"]["merge"]["weights"]
    assert stored == pytest.approx(merge["weights"])


def register_pairs(registry: Registry, name: str = "tiny-pairs") -> str:
    import pyarrow as pa

    from datasets_registry.kinds import MESSAGES_TYPE

    rows = [json.loads(line) for line in SEEDS.read_text().splitlines()[:4]]
    prompts = [[{"role": "user", "content": row["prompt"]}] for row in rows]
    chosen = [[{"role": "assistant", "content": "Here is a careful answer in full sentences."}]] * len(rows)
    rejected = [[{"role": "assistant", "content": "no"}]] * len(rows)
    table = pa.table({name: pa.array(value, MESSAGES_TYPE) for name, value in
                      (("prompt", prompts), ("chosen", chosen), ("rejected", rejected))})  # fmt: skip
    return registry.write(name, table, kind="preference").ref


def tensor(store: ModelStore, name: str, key: str = "lm_head.weight"):  # noqa: ANN201
    from safetensors.torch import load_file

    weights: dict = {}
    for path in sorted(store.resolve(name).path.glob("*.safetensors")):
        weights |= load_file(path)
    return weights.get(key, weights.get("model.embed_tokens.weight"))


def test_preference_after_sft_then_polish_rounds_each_from_the_newest_model(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None, shared_data: Path
) -> None:
    pairs = register_pairs(registry)
    spec_path = write_loop(tmp_path, tiny_model)
    tiny = "{max_steps: 1, max_length: 256, micro_batch_size: 2, torch_threads: 1"
    spec, raw = load_loop_spec(
        spec_path,
        [
            "evaluation={suites: [ifeval], limit: 1, max_tokens: 4}",
            "merge=null",
            f"experts=[{{name: a, domain: ifeval, dataset: tiny-sft@latest, seeds: [0, 1], train: {tiny}}},"
            f" preference: {{dataset: '{pairs}', train: {tiny}, method: dpo, learning_rate: 0.01}}}}}}]",
            # best-of-N SFT twice online (each time generating with the newest model), then offline DPO
            f"polish={{interpolation: 0.5, rounds: ["
            f"{{name: bon, pipeline: pipeline.yaml, model_key: stages.1.engine.model, dataset: tiny-sft,"
            f" repeat: 2, train: {tiny}}}}},"
            f" {{name: dpo, dataset: '{pairs}', train: {tiny}, method: dpo}}}}]}}",
        ],
    )
    home = tmp_path / "assay-home"
    store = ModelStore(home / "models")
    ctx = context(registry, store, home)
    check_loop(spec, tmp_path, ctx)
    state = run_loop(spec, LoopState(name=spec.name, spec=raw, spec_dir=str(tmp_path)), ctx)
    assert list(state.steps) == [
        "data:bon", "eval:start", "expert:a:seed-0", "expert:a:seed-1", "expert:a", "prefer:a", "eval:a",
        "polish:bon-1:data", "polish:bon-1", "polish:bon-2:data", "polish:bon-2", "polish:dpo",
        "eval:polished", "interpolate", "eval:final", "gates",
    ]  # fmt: skip

    # The SFT model is the mean of one run per seed (a seed merge); the seeds ran differently.
    runs = [tensor(store, f"tiny-loop-a-seed-{seed}").float() for seed in (0, 1)]
    assert not runs[0].equal(runs[1])
    assert tensor(store, "tiny-loop-a-sft").float().allclose((runs[0] + runs[1]) / 2, atol=1e-3)
    # Preference training starts from the SFT model; each polish run from the one before it.
    chain = {
        step: state.result(step)["base"]
        for step in ("prefer:a", "polish:bon-1", "polish:bon-2", "polish:dpo")
    }
    assert chain == {
        "prefer:a": "tiny-loop-a-sft",
        "polish:bon-1": "tiny-loop-a",
        "polish:bon-2": "tiny-loop-polish-bon-1",
        "polish:dpo": "tiny-loop-polish-bon-2",
    }
    assert state.result("polish:bon-1:data")["generator"] == "tiny-loop-a"
    assert state.result("polish:bon-2:data")["generator"] == "tiny-loop-polish-bon-1"
    first, second = (state.result(f"polish:bon-{i}")["dataset"] for i in (1, 2))
    assert first != second and first.startswith("tiny-sft@") and second.startswith("tiny-sft@")
    assert store.record("tiny-loop-polish-bon-2")["lineage"]["datasets"] == [second]
    assert store.record("tiny-loop-a")["lineage"]["datasets"] == [pairs]
    assert not tensor(store, "tiny-loop-a").equal(tensor(store, "tiny-loop-a-sft"))  # DPO moved the weights

    # WARP's interpolation: halfway between the polished model and the model polish started from.
    halfway = (tensor(store, "tiny-loop-polish-dpo").float() + tensor(store, "tiny-loop-a").float()) / 2
    assert tensor(store, "tiny-loop-final").float().allclose(halfway, atol=1e-3)
    assert state.result("gates")["final"] == "tiny-loop-final"
    assert {g["name"] for g in state.result("gates")["gates"]} >= {"final at least start on ifeval"}


def test_polish_and_refinement_are_checked_before_any_step(
    tmp_path: Path, tiny_model: Path, registry: Registry
) -> None:
    spec_path = write_loop(tmp_path, tiny_model)
    home = tmp_path / "assay-home"
    ctx = context(registry, ModelStore(home / "models"), home)
    round_ = "{name: bon, pipeline: pipeline.yaml, model_key: stages.1.engine.model"
    refine = "output: mix, base: [tiny-sft@latest], candidates: [{name: c, dataset: tiny-sft@latest}]"
    cases = [
        (f"polish={{rounds: [{round_}, dataset: not-an-output}}]}}", "not an output of pipeline.yaml"),
        (
            f"polish={{rounds: [{round_}, dataset: tiny-sft, train: {{method: dpp}}}}]}}",
            r"polish.rounds.bon.train",
        ),
        ("polish={rounds: [{name: r, dataset: missing@1}]}", "polish.rounds.r.dataset"),
        ("experts.0.preference={dataset: tiny-sft@latest, train: {method: sft}}", "a preference loss"),
        (f"refinement={{{refine}, critical: [mgsm]}}", "'mgsm' is not among evaluation.suites"),
        (
            f"refinement={{{refine}, critical: [ifeval], candidates: [{{name: c, dataset: tiny-sft@latest,"
            " retry: {pipeline: pipeline.yaml, dataset: nope}}]}",
            r"refinement.candidates.c.retry.dataset: 'nope' is not an output",
        ),
    ]
    for override, message in cases:
        with pytest.raises(LoopSpecError, match=message):
            spec, _ = load_loop_spec(spec_path, [override])
            check_loop(spec, tmp_path, ctx)
    with pytest.raises(LoopSpecError, match="repeat > 1 needs a pipeline"):
        load_loop_spec(spec_path, ["polish={rounds: [{name: r, dataset: d@1, repeat: 2}]}"])
    # XSTest decides on its dev split (refused with "has no dev split" before it had one).
    check_loop(load_loop_spec(spec_path, [f"refinement={{{refine}, critical: [xstest]}}"])[0], tmp_path, ctx)


def register_sft(registry: Registry, name: str, reply: str) -> str:
    import pyarrow as pa

    from datasets_registry.kinds import MESSAGES_TYPE

    rows = [json.loads(line) for line in SEEDS.read_text().splitlines()[:4]]
    messages = [
        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": reply}] for r in rows
    ]
    return registry.write(name, pa.table({"messages": pa.array(messages, MESSAGES_TYPE)}), kind="sft").ref


def test_refinement_keeps_a_candidate_only_when_a_critical_dev_metric_improves(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None, shared_data: Path
) -> None:
    base, good, weak = (
        register_sft(registry, n, f"A {n} reply.") for n in ("base-mix", "good-data", "weak-data")
    )
    spec_path = write_loop(tmp_path, tiny_model)
    tiny = "{max_steps: 1, max_length: 256, micro_batch_size: 2, torch_threads: 1}"
    spec, raw = load_loop_spec(
        spec_path,
        [
            "data=[]",
            "merge=null",
            "evaluation={suites: [ifeval], limit: 1, max_tokens: 4}",
            f"experts=[{{name: a, domain: ifeval, dataset: refined-mix@latest, train: {tiny}}}]",
            f"refinement={{output: refined-mix, base: ['{base}'], critical: [ifeval], limit: 1,"
            f" train: {tiny},"
            f" candidates: [{{name: good, dataset: '{good}'}},"
            f" {{name: weak, dataset: '{weak}', retry: {{pipeline: pipeline.yaml, dataset: tiny-sft}}}}]}}",
        ],
    )
    splits: dict[str, str] = {}

    def scripted(model: str, evaluation: EvaluationSpec) -> dict:
        """The real dev evaluation, its score replaced by a script: only `good` helps."""
        splits[model] = evaluation.split
        summary = evaluate_summary(model, evaluation)
        better = model == "tiny-loop-refine-good"
        summary["ifeval"]["prompt_strict"] |= {"value": 0.9 if better else 0.1, "stderr": 0.05}
        return summary

    home = tmp_path / "assay-home"
    store = ModelStore(home / "models")
    ctx = context(registry, store, home, scripted)
    check_loop(spec, tmp_path, ctx)
    state = run_loop(spec, LoopState(name=spec.name, spec=raw, spec_dir=str(tmp_path)), ctx)
    assert list(state.steps)[:6] == [
        "refine:base", "refine:good", "refine:weak",
        "refine:weak:retry:data", "refine:weak:retry", "refine:mix",
    ]  # fmt: skip
    assert state.result("refine:good")["kept"] is True
    assert (
        state.result("refine:weak")["kept"] is False
        and "needs > +0.071" in state.result("refine:weak")["detail"]
    )
    retried = state.result("refine:weak:retry")
    refined = state.result("refine:weak:retry:data")["outputs"]["tiny-sft"]
    assert (
        retried["mix"] == [base, good, refined] and retried["kept"] is False
    )  # the refined data, after good
    mix = state.result("refine:mix")["outputs"]["refined-mix"]
    assert registry.open(mix).info.lineage.sources == [base, good]
    assert registry.open(mix).num_rows == 8
    assert store.record("tiny-loop-a")["lineage"]["datasets"] == [
        mix
    ]  # the expert trains on the accepted mix
    assert {m: s for m, s in splits.items() if "refine" in m} == {
        f"tiny-loop-refine-{r}": "dev" for r in ("base", "good", "weak", "weak-retry")
    }  # decisions read the dev split; the report reads test
    assert splits[str(tiny_model)] == splits["tiny-loop-a"] == "test"


def test_a_merge_left_by_a_killed_run_is_adopted_only_when_it_is_the_same_merge(
    tmp_path: Path, tiny_model: Path, registry: Registry
) -> None:
    import shutil

    from loop.training import linear_merge
    from model_store import ModelLineage

    home = tmp_path / "assay-home"
    store = ModelStore(home / "models")
    for name in ("a", "b"):
        shutil.copytree(tiny_model, tmp_path / name)
        store.register(name, tmp_path / name, kind="sft", lineage=ModelLineage())
    ctx = context(registry, store, home)
    linear_merge(ctx, "soup", ["a", "b"], [0.5, 0.5])
    created = store.record("soup")["created_at"]
    linear_merge(ctx, "soup", ["a", "b"], [0.5, 0.5])  # a resumed step: adopted, not merged again
    assert store.record("soup")["created_at"] == created
    with pytest.raises(LoopStepError, match="'soup' is stored but is not the merge of"):
        linear_merge(ctx, "soup", ["a", "b"], [0.3, 0.7])
    with pytest.raises(LoopStepError, match="'soup' is stored but is not the merge of"):
        linear_merge(ctx, "soup", ["b", "a"], [0.5, 0.5])
