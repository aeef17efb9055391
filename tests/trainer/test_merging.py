"""Model merging: linear soups, recipes, the streaming safetensors writer, weight search, CLI.

Outputs are checked independently of the merger: tensors are read back with safetensors' own
loader and compared with a float64 weighted sum computed in torch.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
import yaml
from safetensors import safe_open
from tiny_models import build_tiny_causal_lm
from typer.testing import CliRunner

from model_store import ModelStore
from trainer.merging import (
    MergeConfig,
    MergeError,
    SafetensorsWriter,
    SearchConfig,
    TensorSpec,
    interpolate,
    leave_one_out_merges,
    leave_one_out_weights,
    load_merge_config,
    merge_linear,
    merge_linear_to_store,
    run_merge,
    run_search,
    seed_merge,
)
from trainer.merging.linear import _Buffers, _to_bfloat16
from trainer.merging.safetensors_io import INDEX_FILE, SafetensorsFormatError, weight_files, write_tensors


@pytest.fixture(scope="module")
def experts(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three tiny Llamas of one architecture with different weights (seeds 0, 1, 2)."""
    root = tmp_path_factory.mktemp("experts")
    return [tiny_model] + [build_tiny_causal_lm(root / f"expert-{seed}", seed=seed) for seed in (1, 2)]


def load(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF folder (single file or shards), read with safetensors' own loader."""
    tensors = {}
    for file in weight_files(folder):
        with safe_open(file, framework="pt") as handle:
            tensors.update({name: handle.get_tensor(name) for name in handle.keys()})  # noqa: SIM118
    return tensors


def weighted_sum(folders: list[Path], weights: list[float]) -> dict[str, torch.Tensor]:
    """The exact (float64) weighted sum of the folders' tensors."""
    loaded = [load(f) for f in folders]
    return {
        name: sum(w * t[name].double() for w, t in zip(weights, loaded, strict=True)) for name in loaded[0]
    }


def max_difference(merged: Path, expected: dict[str, torch.Tensor]) -> float:
    tensors = load(merged)
    assert set(tensors) == set(expected)
    return max((tensors[name].double() - expected[name]).abs().max().item() for name in expected)


def test_merging_identical_models_gives_the_same_model(experts: list[Path], tmp_path: Path) -> None:
    out = merge_linear([experts[0]] * 3, [1 / 3] * 3, tmp_path / "same").path
    original, merged = load(experts[0]), load(out)
    assert all(torch.equal(original[name], merged[name]) for name in original)
    assert (out / "tokenizer.json").read_bytes() == (experts[0] / "tokenizer.json").read_bytes()
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (experts[0] / "config.json").read_text()
    )


def test_weights_one_and_zero_give_the_first_model_exactly(experts: list[Path], tmp_path: Path) -> None:
    out = merge_linear(experts[:2], [1.0, 0.0], tmp_path / "first").path
    original, merged = load(experts[0]), load(out)
    assert all(torch.equal(original[name], merged[name]) for name in original)


def test_output_is_the_weighted_sum_within_1e_6(experts: list[Path], tmp_path: Path) -> None:
    weights = [0.5, 0.3, 0.2]
    out = merge_linear(experts, weights, tmp_path / "soup").path
    assert max_difference(out, weighted_sum(experts, weights)) <= 1e-6
    # Special-token embeddings are rows of embed_tokens: merged like any other weight.
    embeddings = load(out)["model.embed_tokens.weight"]
    assert torch.allclose(
        embeddings[:3].double(), weighted_sum(experts, weights)["model.embed_tokens.weight"][:3]
    )


def test_bfloat16_output_rounds_the_weighted_sum(experts: list[Path], tmp_path: Path) -> None:
    weights = [0.5, 0.3, 0.2]
    out = merge_linear(experts, weights, tmp_path / "bf16", dtype="bfloat16").path
    merged, expected = load(out), weighted_sum(experts, weights)
    for name, exact in expected.items():
        assert merged[name].dtype == torch.bfloat16
        # Within half a bfloat16 ulp of the exact sum (plus the float32 step torch also takes).
        assert ((merged[name].double() - exact).abs() <= exact.abs() * (2**-8 + 2**-20)).all()
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_bfloat16_rounding_matches_torch() -> None:
    special = [0.0, -0.0, 1.0, float("inf"), float("-inf"), float("nan"), 3.4e38, -3.4e38, 1e-40, 1.00390625]
    values = np.concatenate([np.array(special, np.float32), np.random.default_rng(0).normal(0, 3, 10_000)])
    values = values.astype(np.float32)
    ours = _to_bfloat16(values, _Buffers(values.size)).copy()
    theirs = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(values)
    assert np.array_equal(ours[~nan], theirs[~nan])
    assert torch.isnan(torch.from_numpy(ours.view(np.int16)).view(torch.bfloat16)[nan]).all()


def test_linear_merging_is_associative(experts: list[Path], tmp_path: Path) -> None:
    a, b, c = experts
    ab = merge_linear([a, b], [0.5, 0.5], tmp_path / "ab").path
    nested = merge_linear([ab, c], [2 / 3, 1 / 3], tmp_path / "nested").path
    flat = merge_linear([a, b, c], [1 / 3, 1 / 3, 1 / 3], tmp_path / "flat").path
    assert max_difference(nested, {k: v.double() for k, v in load(flat).items()}) <= 1e-6


def test_seed_merge_is_the_uniform_average(experts: list[Path], tmp_path: Path) -> None:
    out = seed_merge(experts, tmp_path / "seeds").path
    assert max_difference(out, weighted_sum(experts, [1 / 3] * 3)) <= 1e-6


def test_leave_one_out_gives_k_merges_with_rescaled_weights(experts: list[Path], tmp_path: Path) -> None:
    rescaled = leave_one_out_weights([0.5, 0.3, 0.2])
    assert [pytest.approx(w) for w in rescaled] == [[0.6, 0.4], [5 / 7, 2 / 7], [0.625, 0.375]]
    results = leave_one_out_merges(experts, tmp_path / "loo", weights=[0.5, 0.3, 0.2])
    assert [r.path.name for r in results] == ["without-0", "without-1", "without-2"]
    for left_out, result in enumerate(results):
        kept = [e for i, e in enumerate(experts) if i != left_out]
        assert sum(result.weights) == pytest.approx(1.0)
        assert max_difference(result.path, weighted_sum(kept, list(result.weights))) <= 1e-6


def test_interpolation_with_the_base(experts: list[Path], tmp_path: Path) -> None:
    base, model = experts[0], experts[1]
    at_zero, at_one = load(interpolate(base, model, 0.0, tmp_path / "a0").path), load(base)
    assert all(torch.equal(at_zero[name], at_one[name]) for name in at_one)
    at_one, expert = load(interpolate(base, model, 1.0, tmp_path / "a1").path), load(model)
    assert all(torch.equal(at_one[name], expert[name]) for name in expert)
    quarter = interpolate(base, model, 0.25, tmp_path / "a25").path
    assert max_difference(quarter, weighted_sum([base, model], [0.75, 0.25])) <= 1e-6


def test_streaming_writer_round_trips_tensors(tmp_path: Path) -> None:
    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.tensor([[1.5, -2.25, 3e38], [1e-30, 0.0, -0.0]], dtype=torch.bfloat16),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "i64": torch.arange(7),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.empty(0),
        "empty2d": torch.empty(2, 0, dtype=torch.bfloat16),
        "scalar": torch.tensor(2.5),
    }
    for label, limit in (("single", 10**9), ("sharded", 40)):
        folder = tmp_path / label
        folder.mkdir()
        write_tensors(folder, tensors, max_shard_size=limit)
        assert (folder / INDEX_FILE).is_file() == (label == "sharded")
        loaded = load(folder)
        assert set(loaded) == set(tensors)
        for name, tensor in tensors.items():
            assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape
            assert torch.equal(loaded[name], tensor), name


def test_streaming_writer_takes_chunks_and_checks_its_plan(tmp_path: Path) -> None:
    values = np.arange(10, dtype=np.float32)
    specs = [TensorSpec("a", "F32", (10,)), TensorSpec("b", "I64", (2,))]
    with SafetensorsWriter(tmp_path / "chunks.safetensors", specs) as writer:
        assert [s.name for s in writer.order] == ["b", "a"]  # 8-byte elements first: aligned offsets
        writer.write("b", np.array([4, 5], dtype=np.int64))
        writer.write("a", values[:3])
        writer.write("a", values[3:])
    with safe_open(tmp_path / "chunks.safetensors", framework="pt") as handle:
        assert torch.equal(handle.get_tensor("a"), torch.arange(10, dtype=torch.float32))
    writer = SafetensorsWriter(tmp_path / "bad.safetensors", specs)
    with pytest.raises(SafetensorsFormatError, match="expected 'b'"):
        writer.write("a", values)
    writer.write("b", np.zeros(2, dtype=np.int64))
    with pytest.raises(SafetensorsFormatError, match="too many bytes"):
        writer.write("a", np.zeros(11, dtype=np.float32))
    with pytest.raises(SafetensorsFormatError, match="closed before tensor 'a' was complete"):
        writer.close()


def test_sharded_merge_loads_with_transformers_and_generates(experts: list[Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    weights = [0.2, 0.5, 0.3]
    out = merge_linear(experts, weights, tmp_path / "sharded", max_shard_size=40_000).path
    assert len(weight_files(out)) > 1 and (out / INDEX_FILE).is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    expected = weighted_sum(experts, weights)
    state = model.state_dict()
    assert all((state[name].double() - tensor).abs().max() <= 1e-6 for name, tensor in expected.items())
    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = tokenizer("Write a short story", return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4
    # A sharded checkpoint is also read across its shards as a merge input.
    again = merge_linear([out, experts[0]], [0.5, 0.5], tmp_path / "from-shards").path
    assert max_difference(again, weighted_sum(experts, [0.6, 0.25, 0.15])) <= 1e-6


def _assert_nothing_written(folder: Path) -> None:
    assert list(folder.iterdir()) == [], f"left behind: {list(folder.iterdir())}"


def test_bad_inputs_fail_before_any_output(experts: list[Path], tmp_path: Path) -> None:
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    wider = build_tiny_causal_lm(tmp_path / "wider", hidden_size=48)
    with pytest.raises(MergeError, match="tensor '.*': .* has F32\\[.*\\], .* has F32\\["):
        merge_linear([experts[0], wider], [0.5, 0.5], out_root / "m")
    other_arch = tmp_path / "other-arch"
    shutil.copytree(experts[1], other_arch)
    config = json.loads((other_arch / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (other_arch / "config.json").write_text(json.dumps(config))
    with pytest.raises(MergeError, match="different architectures"):
        merge_linear([experts[0], other_arch], [0.5, 0.5], out_root / "m")
    with pytest.raises(MergeError, match="sum to 1.2, not 1: .*normalize"):
        merge_linear(experts[:2], [0.6, 0.6], out_root / "m")
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(experts[0], no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(MergeError, match="no tokenizer"):
        merge_linear([no_tokenizer, experts[1]], [0.5, 0.5], out_root / "m")
    _assert_nothing_written(out_root)
    normalized = merge_linear(experts[:2], [3.0, 1.0], out_root / "normalized", normalize=True)
    assert normalized.weights == (0.75, 0.25)
    assert max_difference(normalized.path, weighted_sum(experts[:2], [0.75, 0.25])) <= 1e-6


def test_mergekit_linear_yaml_is_accepted(tmp_path: Path, experts: list[Path]) -> None:
    mergekit = {
        "models": [
            {"model": str(experts[0]), "parameters": {"weight": 2.0}},
            {"model": str(experts[1]), "parameters": {"weight": 1.0}},
        ],
        "merge_method": "linear",
        "dtype": "float32",
    }
    path = tmp_path / "mergekit.yaml"
    path.write_text(yaml.safe_dump(mergekit))
    config = load_merge_config(path)
    assert config.method == "linear" and config.dtype == "float32"
    assert [m.weight for m in config.models] == [2.0, 1.0] and config.normalize  # mergekit's default
    mergekit["parameters"] = {"normalize": False}
    path.write_text(yaml.safe_dump(mergekit))
    with pytest.raises(MergeError, match="mergekit.yaml: .*sum to 3"):
        load_merge_config(path)
    mergekit["models"][0]["parameters"]["weight"] = [0.1, 0.9]  # a per-layer gradient
    path.write_text(yaml.safe_dump(mergekit))
    with pytest.raises(MergeError, match="weight must be one number"):
        load_merge_config(path)
    path.write_text(yaml.safe_dump({**mergekit, "merge_method": "ties"}))
    with pytest.raises(MergeError, match="only mergekit's `merge_method: linear`"):
        load_merge_config(path)


def test_config_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "soup.yaml"
    path.write_text(yaml.safe_dump({"models": [{"model": "a", "wieght": 1.0}]}))
    with pytest.raises(MergeError, match=r"soup.yaml: models.0.wieght: Extra inputs"):
        load_merge_config(path)
    path.write_text(
        yaml.safe_dump({"method": "seed", "models": [{"model": "a", "weight": 0.5}, {"model": "b"}]})
    )
    with pytest.raises(MergeError, match="seed merging uses uniform weights"):
        load_merge_config(path)
    with pytest.raises(ValueError, match="interpolate needs `base`"):
        MergeConfig(method="interpolate", models=[{"model": "a"}])


def test_merges_are_registered_with_lineage(experts: list[Path], tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    config = MergeConfig(
        models=[{"model": str(e), "weight": w} for e, w in zip(experts, [0.5, 0.25, 0.25], strict=True)],
        output="soup",
    )
    (merged,) = run_merge(config, store)
    record = store.record("soup")
    identities = [store.resolve(str(e)).identity for e in experts]
    assert record["kind"] == "merge"
    assert record["lineage"]["merge"] == {
        "method": "linear",
        "models": identities,
        "weights": [0.5, 0.25, 0.25],
    }
    assert record["lineage"]["config"]["output"] == "soup"
    assert store.resolve("soup").path == merged.path
    with pytest.raises(MergeError, match="already stored"):
        run_merge(config, store)
    models = [{"model": "soup"}, {"model": str(experts[1])}, {"model": str(experts[2])}]
    loo = MergeConfig(method="leave_one_out", models=models, output="loo")
    names = [m.name for m in run_merge(loo, store)]
    assert names == ["loo-without-0", "loo-without-1", "loo-without-2"]
    left_out = store.record("loo-without-0")["lineage"]["merge"]
    assert left_out["left_out"] == store.resolve("soup").identity and left_out["weights"] == [0.5, 0.5]
    name = merge_linear_to_store(store, ["soup", str(experts[0])], [0.5, 0.5], name="soup-again")
    assert name == "soup-again"
    assert store.record(name)["lineage"]["merge"]["models"] == [store.resolve("soup").identity, identities[0]]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]  # no staging left


def _recovery_evaluator_source(experts: list[Path], target: list[float]) -> str:
    """Python source of an evaluator: recover the merge weights from the merged tensors by least
    squares, and score domain i by how close its weight comes to a hidden target (1 = reached)."""
    return f"""
import torch
from trainer.merging.safetensors_io import iter_tensors

EXPERTS = {[str(e) for e in experts]!r}
TARGET = {target!r}


def flat(path):
    return torch.cat([t.double().reshape(-1) for _, t in sorted(iter_tensors(path), key=lambda x: x[0])])


BASIS = torch.stack([flat(e) for e in EXPERTS], dim=1)


def evaluate(path):
    weights = torch.linalg.lstsq(BASIS, flat(path)[:, None]).solution[:, 0].tolist()
    # rounded: LAPACK's least squares may differ in the last bits between calls
    return {{d: round(1 - max(0.0, t - w) / t, 9) for d, t, w in zip("abc", TARGET, weights)}}
"""


def _search_config(experts: list[Path], evaluator: str, output: str) -> SearchConfig:
    return SearchConfig(
        experts=[{"model": str(e), "domain": d} for e, d in zip(experts, "abc", strict=True)],
        evaluator=evaluator,
        rounds=4,
        candidates_per_round=3,
        leave_one_out=True,
        seed=7,
        output=output,
    )


def test_search_improves_a_synthetic_evaluation_and_is_deterministic(
    experts: list[Path], tmp_path: Path
) -> None:
    evaluator = tmp_path / "hidden_target.py"
    evaluator.write_text(_recovery_evaluator_source(experts, [0.6, 0.3, 0.1]))
    store = ModelStore(tmp_path / "models")
    first = run_search(_search_config(experts, f"{evaluator}:evaluate", "best-1"), store)
    second = run_search(_search_config(experts, f"{evaluator}:evaluate", "best-2"), store)
    initial = first.history[0]
    assert initial.origin == "initial" and initial.weights == pytest.approx((1 / 3,) * 3)
    assert first.targets == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0})  # each expert's own score
    assert first.best.mean > initial.mean + 0.05
    assert first.best.weights[0] > 1 / 3  # the lagging domain's expert was up-weighted
    assert [c.weights for c in first.history] == [c.weights for c in second.history]
    assert first.best == second.best
    record = store.record("best-1")["lineage"]
    assert record["merge"]["method"] == "search" and record["merge"]["weights"] == list(first.best.weights)
    assert len(record["metrics"]["history"]) == len(first.history)
    assert max_difference(store.path("best-1"), weighted_sum(experts, list(first.best.weights))) <= 1e-6


def test_cli_merges_from_yaml_and_searches(experts: list[Path], tmp_path: Path) -> None:
    from assay.cli import merge
    from assay.errors import AssayError

    cli = typer.Typer()
    cli.add_typer(merge.app, name="merge")  # as assay/cli/main.py registers it

    @cli.callback()
    def _root() -> None: ...

    runner = CliRunner()
    soup = tmp_path / "soup.yaml"
    soup.write_text(
        yaml.safe_dump({"method": "seed", "models": [{"model": str(e)} for e in experts], "output": "s"})
    )
    checked = runner.invoke(cli, ["merge", str(soup), "--check"])
    assert checked.exit_code == 0, checked.output
    assert "nothing written" in checked.output and not ModelStore(tmp_path / "assay-home" / "models").has("s")
    result = runner.invoke(cli, ["merge", str(soup)])
    assert result.exit_code == 0, result.output
    store = ModelStore(tmp_path / "assay-home" / "models")  # $ASSAY_HOME of the autouse fixture
    assert store.record("s")["lineage"]["merge"]["method"] == "seed"

    evaluator = tmp_path / "hidden_target.py"
    evaluator.write_text(_recovery_evaluator_source(experts, [0.5, 0.4, 0.1]))
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump(_search_config(experts, f"{evaluator}:evaluate", "tuned").model_dump()))
    result = runner.invoke(cli, ["merge", "search", str(search)])
    assert result.exit_code == 0, result.output
    assert "best merge: tuned" in result.output and store.has("tuned")

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"models": [{"model": str(e), "weight": 0.5} for e in experts]}))
    result = runner.invoke(cli, ["merge", str(bad)])
    assert isinstance(result.exception, AssayError) and "sum to 1.5" in str(result.exception)
