"""Shared fixtures: a tiny model, an in-process Ray, an empty registry, the shared data folder."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_tiny_causal_lm  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's ~/.cache/assay from a test."""
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "assay-home"))
    monkeypatch.delenv("ASSAY_REGISTRY", raising=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF folder with a tiny random Llama and a ChatML tokenizer."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One in-process Ray for the whole session (starting Ray costs seconds)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")  # fmt: skip
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture
def registry(tmp_path: Path):  # noqa: ANN201
    from datasets_registry import Registry

    return Registry(tmp_path / "registry")


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip that says why."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def pytest_report_header(config: pytest.Config) -> str:
    return f"assay tests; shared data: {'present' if SHARED_DATA.is_dir() else 'ABSENT'}; cpus: {os.cpu_count()}"
