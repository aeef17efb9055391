"""Flag (and optionally drop) rows that overlap an evaluation set: 8-gram decontamination.

Every checked text of a row (by default every string column and the message contents of every
conversation column: `prompt_messages`, `messages`, `chosen`, `rejected`, ...) is compared with
every evaluation item of `eval_sets` (held-out m-IFEval, HumanEval prompt and solution, MGSM in
11 languages, XSTest, LEval questions) through `eval_sets.contamination`: normalised n-grams of
words (characters for Chinese, Japanese, Thai), see that module for the exact rule.

A row is contaminated when, for some evaluation item, it holds at least `min_overlap` of the
item's n-grams (0: any shared n-gram). The stage writes `contaminated` (bool) and
`contamination` (the items that reach the threshold: set, item, overlap of the item, overlap of
the row), and with `drop: true` removes contaminated rows. Rows that failed earlier pass through
unchecked. The stage's lineage metrics give rows checked, flagged and dropped, flagged rows per
evaluation set, and the identity of each set checked against.

The index is built once per actor (one actor by default, about a second to build), never per
batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field

from assay.errors import AssayError
from datagen.stages.base import ERROR_COLUMN, LIGHT_TASK_CPUS, BuildContext, Stage, StageSpec, set_column
from datagen.stages.registry import register_stage
from eval_sets.contamination import (
    DEFAULT_MIN_OVERLAP,
    DEFAULT_N,
    default_index,
    flagged,
    set_identities,
    table_texts,
    text_columns,
)
from eval_sets.loaders import EVAL_SETS

if TYPE_CHECKING:
    import ray.data

CONTAMINATION_TYPE = pa.list_(
    pa.struct(
        [
            ("set", pa.string()),
            ("item", pa.string()),
            ("overlap", pa.float64()),
            ("text_overlap", pa.float64()),
        ]
    )
)


class DecontaminateStageSpec(StageSpec):
    """Flag rows sharing n-grams with an evaluation set; optionally drop them."""

    type: Literal["decontaminate"] = "decontaminate"
    columns: list[str] | None = Field(
        None,
        description="Columns whose texts are checked (strings, or conversations: each message's "
        "content); null: every string and conversation column except `id`.",
    )
    min_overlap: float = Field(
        DEFAULT_MIN_OVERLAP,
        ge=0.0,
        le=1.0,
        description="A row is contaminated when it holds at least this share of an evaluation item's "
        "n-grams; 0 flags any shared n-gram.",
    )
    n: int = Field(DEFAULT_N, ge=2, description="Word n-gram length (8, as Tülu 3's decontamination).")
    char_n: int | None = Field(
        None,
        ge=2,
        description="Character n-gram length for Chinese and Japanese (Thai: twice it); default 2n.",
    )
    drop: bool = Field(False, description="Remove contaminated rows (else only flag them).")
    batch_size: int = Field(1024, ge=1, description="Rows checked at a time.")


class _Counts:
    """Rows checked and flagged, summed over every batch (a Ray actor, so drops are counted)."""

    def __init__(self) -> None:
        self.totals: dict[str, Any] = {"rows_checked": 0, "rows_flagged": 0, "by_set": {}}

    def add(self, checked: int, flagged_rows: int, by_set: dict[str, int]) -> None:
        self.totals["rows_checked"] += checked
        self.totals["rows_flagged"] += flagged_rows
        for name, count in by_set.items():
            self.totals["by_set"][name] = self.totals["by_set"].get(name, 0) + count

    def get(self) -> dict[str, Any]:
        return self.totals


@register_stage
class DecontaminateStage(Stage[DecontaminateStageSpec]):
    """Writes `contaminated` and `contamination`; with `drop`, keeps only clean rows."""

    spec_class = DecontaminateStageSpec

    def __init__(self, spec: DecontaminateStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = tuple(spec.columns or ())
        self.writes = {"contaminated": pa.bool_(), "contamination": CONTAMINATION_TYPE}
        # Read now, so missing evaluation files fail the spec before any work.
        try:
            self.identities = set_identities(EVAL_SETS)
        except AssayError as err:
            raise AssayError(f"{(context or BuildContext()).field('type')}: {err}") from err
        self.counter: Any = None

    @property
    def concurrency(self) -> int:
        return 1  # one actor holds the index for the whole job

    @property
    def actor_cpus(self) -> float:
        return LIGHT_TASK_CPUS

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        import ray
        import ray.data

        self.counter = ray.remote(num_cpus=0)(_Counts).remote()
        return ds.map_batches(
            _DecontaminateWorker,
            fn_constructor_args=(self.spec, self.counter),
            batch_size=self.spec.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.concurrency),
            num_cpus=self.actor_cpus,
        )

    def metrics(self, result: Any) -> dict[str, Any]:
        """Rows checked, flagged (and dropped), flagged rows per evaluation set, the sets' identities."""
        import ray

        if self.counter is None:
            return {}
        totals = ray.get(self.counter.get.remote())
        return {
            "rows_checked": totals["rows_checked"],
            "rows_flagged": totals["rows_flagged"],
            "rows_dropped": totals["rows_flagged"] if self.spec.drop else 0,
            "by_set": {name: totals["by_set"].get(name, 0) for name in EVAL_SETS},
            "min_overlap": self.spec.min_overlap,
            "n": self.spec.n,
            "eval_sets": self.identities,
        }


class _DecontaminateWorker:
    """A Ray actor holding the index (built once, here) and checking batches against it."""

    def __init__(self, spec: DecontaminateStageSpec, counter: Any) -> None:
        self.spec = spec
        self.counter = counter
        self.index = default_index(spec.n, spec.char_n)

    def __call__(self, table: pa.Table) -> pa.Table:
        import ray

        spec = self.spec
        errors = table[ERROR_COLUMN].to_pylist()
        pending = [i for i, error in enumerate(errors) if error is None]
        columns = spec.columns or [c for c in text_columns(table.schema) if c != "contamination"]
        texts = table_texts(table.take(pending), columns) if pending else []
        contaminated: list[bool | None] = [None] * table.num_rows
        found: list[list[dict[str, Any]] | None] = [None] * table.num_rows
        by_set: dict[str, int] = {}
        for row, matches in zip(pending, self.index.query_rows(texts), strict=True):
            hits = flagged(matches, spec.min_overlap)
            contaminated[row] = bool(hits)
            found[row] = [
                {"set": m.set, "item": m.item, "overlap": m.overlap, "text_overlap": m.text_overlap}
                for m in hits
            ]
            for name in {m.set for m in hits}:
                by_set[name] = by_set.get(name, 0) + 1
        out = set_column(table, "contaminated", pa.array(contaminated, type=pa.bool_()))
        out = set_column(out, "contamination", pa.array(found, type=CONTAMINATION_TYPE))
        # Waited for, so every batch is counted by the time the dataset is materialised.
        ray.get(self.counter.add.remote(len(pending), sum(bool(c) for c in contaminated), by_set))
        if spec.drop:
            out = out.filter(pa.array([not c for c in contaminated], type=pa.bool_()))
        return out
