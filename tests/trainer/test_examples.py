"""The example training configs in examples/train are valid configs for their commands."""

from pathlib import Path

import pytest

from trainer.config import load_train_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "train"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path: Path) -> None:
    method = path.stem.split("_")[0]
    config = load_train_config(path, method)
    assert config.method == method and config.dataset.endswith("@latest")
