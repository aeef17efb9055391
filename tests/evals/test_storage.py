"""Results stored with the model: the log line, the items file beside it, and reading them back."""

import math
import shutil
from pathlib import Path

import pytest

from evals.base import Metric, SuiteResult
from evals.results import latest_runs, load_runs, store_result
from model_store import ModelLineage, ModelStore, ModelStoreError


@pytest.fixture
def store(tiny_model: Path, tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models")
    shutil.copytree(tiny_model, tmp_path / "copy")
    store.register("tiny", tmp_path / "copy", kind="sft", lineage=ModelLineage())
    return store


def result(suite: str, value: float) -> SuiteResult:
    return SuiteResult(
        suite=suite,
        eval_set=f"{suite}#sha256=0123",
        metrics=[Metric("accuracy", value, 0.1, 10), Metric("balance", math.nan, math.nan, 0)],
        items=[
            {"id": "a", "response": "été 18", "correct": True},
            {"id": "b", "response": "", "correct": False},
        ],
        wall_s=1.5,
        settings={"limit": 10},
    )


def test_a_stored_run_reads_back_with_its_items(store: ModelStore) -> None:
    identity = store.resolve("tiny").identity
    stored = store_result(
        store, "tiny", result("mgsm", 0.5), model_identity=identity, generation={"generated": 2}
    )
    (run,) = load_runs(store, "tiny")
    assert run.id == stored.id and run.suite == "mgsm" and run.model == identity
    assert run.metric("accuracy") == Metric("accuracy", 0.5, 0.1, 10)
    assert math.isnan(run.metric("balance").value)
    assert run.items() == result("mgsm", 0.5).items
    assert run.settings == {"limit": 10} and run.generation == {"generated": 2} and run.created_at
    assert run.items_path is not None and run.items_path.parent.parent == store.path("tiny")
    assert run.result().items == run.items() and run.summary()["metrics"][1]["value"] is None


def test_latest_runs_keeps_the_newest_of_each_suite(store: ModelStore) -> None:
    for suite, value in [("mgsm", 0.1), ("xstest", 0.2), ("mgsm", 0.3)]:
        store_result(store, "tiny", result(suite, value), model_identity="m")
    latest = latest_runs(store, "tiny")
    assert [(r.suite, r.metric("accuracy").value) for r in latest] == [("mgsm", 0.3), ("xstest", 0.2)]
    assert len(load_runs(store, "tiny")) == 3


def test_evaluating_a_model_keeps_its_identity(store: ModelStore) -> None:
    before = store.resolve("tiny").identity
    store_result(store, "tiny", result("mgsm", 0.5), model_identity=before)
    assert store.resolve("tiny").identity == before  # so its cached calls still match


def test_an_unknown_model_stores_nothing(store: ModelStore) -> None:
    with pytest.raises(ModelStoreError, match="no stored model 'nope'"):
        store_result(store, "nope", result("mgsm", 0.5), model_identity="m")
    assert not (store.root / "nope").exists()
