"""Every config loader reads YAML the same way: pipeline specs, training, reward-model, merge
and merge-search configs name the file and the problem alike, and `--set` nests the same way."""

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from assay.errors import AssayError
from datagen.spec import load_spec
from reward_model.config import RMConfigError, load_rm_config
from trainer.config import TrainConfigError, load_train_config
from trainer.merging import MergeError, load_merge_config, load_search_config

LOADERS: dict[str, tuple[Callable[[Path], object], type[Exception], str]] = {
    "spec": (load_spec, AssayError, "pipeline spec"),
    "train": (lambda path: load_train_config(path, "sft"), TrainConfigError, "training config"),
    "rm": (load_rm_config, RMConfigError, "reward-model config"),
    "merge": (load_merge_config, MergeError, "merge config"),
    "search": (load_search_config, MergeError, "merge search config"),
}


@pytest.mark.parametrize("kind", LOADERS)
def test_bad_files_are_named_alike(tmp_path: Path, kind: str) -> None:
    load, error, what = LOADERS[kind]
    path = tmp_path / "config.yaml"
    with pytest.raises(error, match=f"{what} not found: {path}"):
        load(path)
    path.write_text("name: [unclosed")
    with pytest.raises(error, match=f"{path}: malformed YAML"):
        load(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(error, match=f"{path}: a {what} is a YAML mapping, got list"):
        load(path)
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(error, match=f"{path}: not UTF-8"):
        load(path)
    path.write_text("no_such_field: 1\n")
    with pytest.raises(error, match=rf"{path}: no_such_field: Extra inputs are not permitted"):
        load(path)


def test_overrides_nest_index_and_fail_clearly(tmp_path: Path) -> None:
    path = tmp_path / "rm.yaml"
    path.write_text(yaml.safe_dump({"datasets": ["pairs@1"], "stage2": {"learning_rate": 1e-6}}))
    config = load_rm_config(path, ["stage2.learning_rate=1e-5", "datasets.0=other@2", "seed=3"])
    assert (config.stage2.learning_rate, config.datasets, config.seed) == (1e-5, ["other@2"], 3)
    with pytest.raises(RMConfigError, match="expected KEY=VALUE"):
        load_rm_config(path, ["seed"])
    with pytest.raises(RMConfigError, match="no such list index '5'"):
        load_rm_config(path, ["datasets.5=x@1"])
    with pytest.raises(RMConfigError, match=rf"{path}: stage2.learning_rate: Input should be greater than 0"):
        load_rm_config(path, ["stage2.learning_rate=-1"])

    train = tmp_path / "sft.yaml"
    train.write_text(yaml.safe_dump({"dataset": "sft-data@1"}))
    assert load_train_config(train, "sft", ["learning_rate=0.001"]).learning_rate == 0.001
    with pytest.raises(TrainConfigError, match="expected KEY=VALUE"):
        load_train_config(train, "sft", ["learning_rate"])
