"""Evaluation results stored with the model: one log line per suite run, items in a file beside it.

`store_result` appends one run to the stored model's evaluation log (`ModelStore.add_eval`,
`assay_evals.jsonl` in the model's folder) holding:

- `id` (a fresh hex id), `suite`, `eval_set` (`eval_sets.identity`: which files and split),
  `model` (the generator's model identity: reference and weights fingerprint), `created_at`;
- `metrics` (`Metric.as_dict` each: name, value, stderr, n, higher_is_better), `wall_s`;
- `settings` (the suite's: limit, sampling; plus the engine's config), `generation`
  (completions generated and taken from the cache, tokens, engine seconds);
- `items_file`: the per-item records (id, response, per-item score, ...), one JSON object a
  line, in `assay_eval_items/<id>.jsonl` of the model's folder, relative to that folder. They
  are written before the log line, so a log line never names a missing file; a full IFEval run
  is about a megabyte of replies, too much for a log every `models show` reads.

Evaluation files are not part of a model's fingerprint (model_store.fingerprint), so evaluating
a model keeps its identity and its LLM-call cache entries.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.base import Metric, SuiteResult
from model_store import ModelStore
from model_store.store import EVAL_ITEMS_DIR


@dataclass
class StoredRun:
    """One stored suite run, as readers (`eval compare`, `models show`, the viewer) see it."""

    id: str
    suite: str
    eval_set: str
    model: str
    created_at: str
    metrics: list[Metric]
    wall_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    items_path: Path | None = None

    def metric(self, name: str) -> Metric:
        """The metric called `name` (EvalError if the run has none)."""
        return self.result(with_items=False).metric(name)

    def items(self) -> list[dict[str, Any]]:
        """The per-item records ([] when the file is gone)."""
        if self.items_path is None or not self.items_path.is_file():
            return []
        lines = self.items_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def result(self, *, with_items: bool = True) -> SuiteResult:
        """The run as a SuiteResult (its items read from their file when `with_items`)."""
        return SuiteResult(
            suite=self.suite,
            eval_set=self.eval_set,
            metrics=list(self.metrics),
            items=self.items() if with_items else [],
            wall_s=self.wall_s,
            settings=dict(self.settings),
        )

    def summary(self) -> dict[str, Any]:
        """The run as JSON, without its items (NaN values as None)."""
        return {
            "id": self.id,
            "suite": self.suite,
            "eval_set": self.eval_set,
            "model": self.model,
            "created_at": self.created_at,
            "metrics": [_finite(m.as_dict()) for m in self.metrics],
            "wall_s": self.wall_s,
            "settings": self.settings,
            "generation": self.generation,
            "items_file": str(self.items_path) if self.items_path else None,
        }


def _finite(metric: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metric.items()}


def store_result(
    store: ModelStore,
    name: str,
    result: SuiteResult,
    *,
    model_identity: str,
    generation: dict[str, Any] | None = None,
) -> StoredRun:
    """Write a suite's items beside the stored model, then append the run to its evaluation log.

    Raises:
        ModelStoreError: `name` is not a stored model.
    """
    store.record(name)  # a clear error before anything is written
    run_id = uuid.uuid4().hex[:16]
    relative = f"{EVAL_ITEMS_DIR}/{run_id}.jsonl"
    items_path = store.path(name) / relative
    items_path.parent.mkdir(exist_ok=True)
    with items_path.open("w", encoding="utf-8") as out:
        for item in result.items:
            out.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
    run = {
        "id": run_id,
        "suite": result.suite,
        "eval_set": result.eval_set,
        "model": model_identity,
        "created_at": datetime.now(UTC).isoformat(),
        "metrics": [metric.as_dict() for metric in result.metrics],
        "wall_s": round(result.wall_s, 3),
        "settings": result.settings,
        "generation": generation or {},
        "items_file": relative,
    }
    store.add_eval(name, run)
    return _from_record(run, store.path(name))


def _from_record(run: dict[str, Any], folder: Path) -> StoredRun:
    metrics = [
        Metric(
            m["name"],
            _number(m.get("value")),
            _number(m.get("stderr")),
            m.get("n", 0),
            m.get("higher_is_better", True),
        )
        for m in run.get("metrics", [])
        if isinstance(m, dict) and "name" in m  # a line another writer shaped differently keeps the rest
    ]
    items = run.get("items_file")
    return StoredRun(
        id=run.get("id", ""),
        suite=run.get("suite", "?"),
        eval_set=run.get("eval_set", "?"),
        model=run.get("model", "?"),
        created_at=run.get("created_at", ""),
        metrics=metrics,
        wall_s=run.get("wall_s", 0.0),
        settings=run.get("settings", {}),
        generation=run.get("generation", {}),
        items_path=folder / items if items else None,
    )


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def load_runs(store: ModelStore, name: str) -> list[StoredRun]:
    """Every suite run stored with model `name`, oldest first (runs of other writers included:
    a log line without `suite`/`metrics` reads with defaults)."""
    return [_from_record(run, store.path(name)) for run in store.evals(name)]


def latest_runs(store: ModelStore, name: str) -> list[StoredRun]:
    """The newest run of each suite stored with model `name`, in the order suites first ran."""
    latest: dict[str, StoredRun] = {}
    for run in load_runs(store, name):
        latest[run.suite] = run  # a dict keeps the first insertion's place, takes the last value
    return list(latest.values())
