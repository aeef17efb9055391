"""Preparing tests on the host: safe from many threads, and linear in the size of the tests.

The host prepares Python tests from many threads at once (verify_many); on CPython 3.11 a
concurrent ast.parse can fail with "AST constructor recursion depth mismatch" when a garbage
collection inside one parse runs a finalizer (gh-106905). This happened in CI, once per several
runs; here finalizer-heavy garbage and a tiny switch interval make it happen on most runs.

Preparation once cost tests x source size (`ast.get_source_segment` re-split the whole source for
every assert): a 600 KB test source with 21 asserts took 83 s, and timed out in the sandbox."""

import gc
import gzip
import json
import random
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from timing import bound

from sandbox.execution import Limits
from sandbox.harness.python_harness import discover, prepare
from sandbox.languages import get_runner


class _BusyFinalizer:
    """Cyclic garbage whose finalizer runs bytecode, so the collector can switch threads."""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        sum(range(200))


@pytest.fixture
def hostile_scheduler() -> Iterator[None]:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50, 5, 5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)


def test_preparing_tests_from_many_threads_never_trips_the_ast_counter(
    shared_data: Path, hostile_scheduler: None
) -> None:
    with gzip.open(shared_data / "humaneval" / "HumanEval.jsonl.gz", "rt") as lines:
        sources = [json.loads(line)["test"] for line in lines] * 5

    def one(source: str) -> int:
        _BusyFinalizer()
        tests, _ = prepare(source)
        return len(tests)

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(one, sources))
    assert len(counts) == len(sources)
    assert all(count > 0 for count in counts)


def assert_style(size: int, language: str = "python") -> str:
    """A test source of about `size` characters: one assert per 5 KB, each over a large literal."""
    rng = random.Random(size)
    count = size // 5_000
    values = [", ".join(str(rng.randrange(10**6)) for _ in range(5_000 // 8)) for _ in range(count)]
    if language == "python":
        return "def check(candidate):\n" + "".join(
            f"    assert candidate([{v}]) == {i}\n" for i, v in enumerate(values)
        ) + "\ncheck(count)\n"  # fmt: skip
    return "#include <cassert>\n#include <vector>\nint main() {\n" + "".join(
        f"  assert(count(std::vector<long>{{{v}}}) == {i});\n" for i, v in enumerate(values)
    ) + "}\n"  # fmt: skip


def cpu_seconds(work, repeat: int = 3) -> float:  # noqa: ANN001
    """The least CPU time of `repeat` runs (CPU time: waiting for a busy core does not count)."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


@pytest.mark.parametrize("language", ["python", "cpp"])
def test_preparing_tests_is_linear_in_their_size(language: str) -> None:
    small, large = assert_style(40_000, language), assert_style(400_000, language)
    if language == "python":
        names = [test["name"] for test in discover(large)]
        assert len(names) == 80 and names[1].startswith("line 3: candidate([") and names[1].endswith("...")

        def work(tests: str) -> object:
            return prepare(tests)
    else:
        runner = get_runner(language)

        def work(tests: str) -> object:
            return runner.plan("long count(std::vector<long> v) { return 0; }", tests, Limits())

    small_s, large_s = cpu_seconds(lambda: work(small)), cpu_seconds(lambda: work(large))
    # 10x the source and 10x the asserts: ~10x the time when linear, ~100x when it costs
    # tests x size (the old way took minutes here).
    assert large_s < 30 * max(small_s, 0.002), (small_s, large_s)
    assert large_s < bound(2.0), large_s
