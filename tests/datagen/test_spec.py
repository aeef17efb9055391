"""Pipeline spec validation: unknown keys, stages and recipes fail naming the field and file."""

from pathlib import Path

import pytest
import yaml

from assay.errors import AssayError
from datagen.spec import load_spec
from datagen.stages.generate import GenerateStageSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "best_of_n_ifeval.yaml"

MINIMAL = {
    "name": "p",
    "source": {"path": "rows.jsonl"},
    "stages": [{"type": "render", "template": "t.j2"}],
    "outputs": [{"dataset": "out", "kind": "generic"}],
}


def write_spec(tmp_path: Path, spec: dict | str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return path


def test_example_spec_is_valid() -> None:
    loaded = load_spec(EXAMPLE)
    assert [s.type for s in loaded.spec.stages] == ["render", "generate", "ifeval_verify", "best_of_n"]
    generate = loaded.spec.stages[1]
    assert isinstance(generate, GenerateStageSpec)
    assert generate.sampling.temperatures() == [0.3, 0.7, 1.0, 1.3]
    assert loaded.resolve(loaded.spec.source.path).is_file()


def test_unknown_key_names_field_and_file(tmp_path: Path) -> None:
    spec = {**MINIMAL, "stages": [{"type": "render", "template": "t.j2", "tempalte": "x"}]}
    with pytest.raises(AssayError, match=r"spec\.yaml: stages\.0\.render\.tempalte: Extra inputs"):
        load_spec(write_spec(tmp_path, spec))


def test_unknown_stage_type_lists_known_types(tmp_path: Path) -> None:
    spec = {**MINIMAL, "stages": [{"type": "translate"}]}
    with pytest.raises(AssayError, match=r"stages\.0: .*'translate'") as raised:
        load_spec(write_spec(tmp_path, spec))
    assert "'render'" in str(raised.value) and "'generate'" in str(raised.value)


def test_malformed_yaml_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(AssayError, match="malformed YAML"):
        load_spec(write_spec(tmp_path, "name: [unclosed"))
    with pytest.raises(AssayError, match="is a YAML mapping"):
        load_spec(write_spec(tmp_path, "- a\n- b\n"))
    with pytest.raises(AssayError, match="not found"):
        load_spec(tmp_path / "absent.yaml")


def test_cross_field_checks(tmp_path: Path) -> None:
    spec = {**MINIMAL, "source": {"path": "a.jsonl", "dataset": "d"}}
    with pytest.raises(AssayError, match=r"source: give exactly one"):
        load_spec(write_spec(tmp_path, spec))
    generate = {"type": "generate", "sampling": {"n": 2, "temperature": [0.1, 0.2, 0.3]}}
    with pytest.raises(AssayError, match=r"stages\.0\.generate\.sampling: .*lists 3 values but n is 2"):
        load_spec(write_spec(tmp_path, {**MINIMAL, "stages": [generate]}))
    with pytest.raises(AssayError, match=r"outputs\.0\.dataset: .*invalid dataset name"):
        load_spec(write_spec(tmp_path, {**MINIMAL, "outputs": [{"dataset": "Bad Name", "kind": "sft"}]}))


def test_overrides(tmp_path: Path) -> None:
    loaded = load_spec(EXAMPLE, ["stages.1.sampling.n=2", "stages.1.sampling.temperature=0.5", "name=other"])
    assert loaded.spec.name == "other"
    assert loaded.spec.stages[1].sampling.temperatures() == [0.5, 0.5]
    assert loaded.raw["stages"][1]["sampling"]["n"] == 2
    with pytest.raises(AssayError, match="expected KEY=VALUE"):
        load_spec(EXAMPLE, ["stages.1.sampling.n"])
    with pytest.raises(AssayError, match="no such list index"):
        load_spec(EXAMPLE, ["stages.9=1"])


def test_recipe_expands_to_the_same_stages_as_listing_them(tmp_path: Path) -> None:
    explicit = load_spec(EXAMPLE).spec
    recipe_spec = {
        "name": explicit.name,
        "source": {"path": "../datagen/seeds/ifeval_multilingual.jsonl"},
        "recipe": {
            "name": "best_of_n",
            "params": {
                "template": "templates/instruction.j2",
                "engine": {"model": "smollm2-135m-instruct", "batch_size": 25, "torch_threads": 2},
                "sampling": {"n": 4, "temperature": [0.3, 0.7, 1.0, 1.3], "top_p": 0.95,
                             "max_tokens": 160, "seed": 0},
                "min_sft_score": 0.5,
            },
        },
        "outputs": [o.model_dump() for o in explicit.outputs],
    }  # fmt: skip
    from_recipe = load_spec(write_spec(tmp_path, recipe_spec)).spec
    assert from_recipe.stages == explicit.stages


def test_unknown_recipe_and_bad_params(tmp_path: Path) -> None:
    base = {k: v for k, v in MINIMAL.items() if k != "stages"}
    with pytest.raises(AssayError, match=r"recipe\.name: unknown recipe 'worst_of_n'; recipes: .*best_of_n"):
        load_spec(write_spec(tmp_path, {**base, "recipe": {"name": "worst_of_n"}}))
    bad = {**base, "recipe": {"name": "best_of_n", "params": {"template": "t.j2", "min_margin": -1}}}
    with pytest.raises(AssayError, match=r"recipe\.params\.min_margin"):
        load_spec(write_spec(tmp_path, bad))
    both = {**MINIMAL, "recipe": {"name": "best_of_n"}}
    with pytest.raises(AssayError, match="not both"):
        load_spec(write_spec(tmp_path, both))


def test_dead_letter_and_output_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(AssayError, match=r"dead_letter: .*invalid dataset name"):
        load_spec(write_spec(tmp_path, {**MINIMAL, "dead_letter": "Bad Name!"}))
    same = {
        **MINIMAL,
        "outputs": [{"dataset": "out", "kind": "sft"}, {"dataset": "out", "kind": "preference"}],
    }
    with pytest.raises(AssayError, match=r"repeated: \['out'\]"):
        load_spec(write_spec(tmp_path, same))
    with pytest.raises(AssayError, match="invalid dataset name"):
        load_spec(write_spec(tmp_path, {**MINIMAL, "name": "x" * 120}))  # NAME-dead-letter too long


def test_recipe_sampling_overrides_keep_the_other_defaults(tmp_path: Path) -> None:
    spec = {k: v for k, v in MINIMAL.items() if k != "stages"}
    spec["recipe"] = {"name": "best_of_n", "params": {"template": "t.j2", "sampling": {"max_tokens": 32}}}
    generate = load_spec(write_spec(tmp_path, spec)).spec.stages[1]
    assert generate.sampling.n == 4 and generate.sampling.max_tokens == 32
