"""Fixtures for reward-model tests: a tiny backbone's tokenizer and a tiny saved reward model."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model: Path):  # noqa: ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="session")
def tiny_reward_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward model on the tiny backbone (random head), saved as an HF folder."""
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel

    folder = tmp_path_factory.mktemp("tiny-rm") / "rm"
    RewardModel.from_backbone(tiny_model, seed=1).save(folder, AutoTokenizer.from_pretrained(tiny_model))
    return folder
