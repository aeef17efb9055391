"""The host prepares Python tests from many threads at once (verify_many); on CPython 3.11 a
concurrent ast.parse can fail with "AST constructor recursion depth mismatch" when a garbage
collection inside one parse runs a finalizer (gh-106905). This happened in CI, once per several
runs; here finalizer-heavy garbage and a tiny switch interval make it happen on most runs."""

import gc
import gzip
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox.harness.python_harness import prepare


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
