"""Generate completions with an LLM engine inside a Ray actor pool (one model load per actor)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from datagen.engines.base import COMPLETIONS_TYPE
from datagen.engines.config import EngineConfig, SamplingConfig
from datagen.stages.base import Row, RowResult, Stage, process_table, run_rows_isolated
from trainer.model_store import ResolvedModel

if TYPE_CHECKING:
    import ray.data


class GenerateStage(Stage):
    """Sample `sampling.n` completions per conversation; writes a list of completions per row."""

    def __init__(
        self,
        name: str,
        engine: EngineConfig,
        sampling: SamplingConfig,
        model: ResolvedModel,
        input: str,
        output: str,
    ) -> None:
        super().__init__(name)
        self.engine, self.sampling, self.model = engine, sampling, model
        self.input, self.output = input, output
        self.reads = (input,)
        self.writes = {output: COMPLETIONS_TYPE}

    @property
    def models(self) -> list[str]:
        return [self.model.identity]

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        import ray.data

        return ds.map_batches(
            _GenerateWorker,
            fn_constructor_args=(self.name, self.engine, self.sampling, self.model, self.input, self.output),
            batch_size=self.engine.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.engine.concurrency),
            num_cpus=self.engine.num_cpus,
            udf_modifying_row_count=False,
        )


class _GenerateWorker:
    """A Ray actor holding one engine; called with batches of rows."""

    def __init__(
        self,
        stage_name: str,
        engine: EngineConfig,
        sampling: SamplingConfig,
        model: ResolvedModel,
        input: str,
        output: str,
    ) -> None:
        from datagen.engines.hf import HFEngine

        self.stage_name, self.sampling, self.input, self.output = stage_name, sampling, input, output
        self.engine = HFEngine(engine, model)

    def __call__(self, table: pa.Table) -> pa.Table:
        return process_table(
            table, self.stage_name, (self.input,), {self.output: COMPLETIONS_TYPE}, self._generate
        )

    def _generate(self, rows: list[Row]) -> list[RowResult]:
        # Fail too-long prompts alone, so they do not sink the whole batch.
        checked = run_rows_isolated(rows, self._check)
        ok = [i for i, result in enumerate(checked) if not isinstance(result, Exception)]
        try:
            batches = self.engine.generate([rows[i][self.input] for i in ok], self.sampling)
        except Exception:  # noqa: BLE001 - retry row by row so only the bad row fails
            generated = run_rows_isolated([rows[i] for i in ok], self._generate_one)
        else:
            generated = [{self.output: [c.to_row() for c in cs]} for cs in batches]
        for index, result in zip(ok, generated, strict=True):
            checked[index] = result
        return checked

    def _check(self, row: Row) -> Row:
        self.engine.check_prompt(row[self.input])
        return row

    def _generate_one(self, row: Row) -> Row:
        (completions,) = self.engine.generate([row[self.input]], self.sampling)
        return {self.output: [c.to_row() for c in completions]}
