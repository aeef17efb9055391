"""Shared fixtures (a tiny model, an in-process Ray, an empty registry, the shared data folder) and
the rules for missing resources (see resources.py): loud skips, or failures under ASSAY_REQUIRE,
where a single skipped test fails the run."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import resources  # noqa: E402
import timing  # noqa: E402
from tiny_models import build_tiny_causal_lm  # noqa: E402

SHARED_DATA = resources.SHARED_DATA


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
    """../shared/data, or a loud skip (a failure when ASSAY_REQUIRE names `shared`)."""
    reason = resources.shared_missing()
    if reason:
        resources.unavailable("shared", reason)
    return SHARED_DATA


# Markers that name a resource a test needs (fixtures check the others: bwrap, shared, the image).
MARKED_RESOURCES = ("docker", "gpu", "vllm")


def pytest_configure(config: pytest.Config) -> None:
    resources.required()  # a typo in ASSAY_REQUIRE stops the run before anything runs
    try:
        timing.time_factor()
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests whose resource marker names something this machine lacks.

    Without ASSAY_REQUIRE they skip loudly with the reason. Under it a required one fails
    (`pytest_runtest_setup`), and `gpu` tests on a machine without a GPU are deselected, and
    said so, unless `gpu` is required: CI has no GPU, and its rule is "0 skipped".
    """
    required = resources.required()
    for marker in MARKED_RESOURCES:
        marked = [item for item in items if item.get_closest_marker(marker)]
        reason = resources.CHECKS[marker]() if marked else None
        if not reason or marker in required:
            continue
        if marker == "gpu" and required:
            config.hook.pytest_deselected(items=marked)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]
            _deselected_notes.append(f"deselected {len(marked)} gpu test(s): {reason}")
            continue
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=f"SKIPPED LOUDLY ({marker} missing): {reason}"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked with a required resource this machine lacks fails, naming what is missing."""
    for marker in resources.required() & set(MARKED_RESOURCES):
        if item.get_closest_marker(marker):
            reason = resources.CHECKS[marker]()
            if reason:
                resources.unavailable(marker, reason)


_skipped: list[str] = []
_deselected_notes: list[str] = []


def _count_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _count_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _count_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ASSAY_REQUIRE a skipped test fails the run: CI's green must mean every test ran."""
    if resources.strict() and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for note in _deselected_notes:
        terminalreporter.write_line(note)
    terminalreporter.write_line(f"skipped tests: {len(_skipped)}")
    if resources.strict() and _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) skipped under {resources.REQUIRE_ENV}="
            f"{os.environ[resources.REQUIRE_ENV]}; CI requires 0: {', '.join(_skipped[:10])}",
            red=True,
            bold=True,
        )


def pytest_report_header(config: pytest.Config) -> str:
    required = ",".join(sorted(resources.required())) or "nothing (missing resources skip)"
    shared = "present" if SHARED_DATA.is_dir() else "ABSENT"
    return (
        f"assay tests; shared data: {shared}; cpus: {os.cpu_count()}; required: {required}; "
        f"time factor: {timing.time_factor():g}"
    )
