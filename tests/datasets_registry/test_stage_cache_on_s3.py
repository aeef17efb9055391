"""The stage-result cache on an object store: results put by one client come back, with their
Arrow types, to a fresh one (as a resumed job on another node reads them)."""

import pyarrow as pa

from datagen.job import cache_uri
from datagen.stage_cache import StageCacheUser, StageResultCache, process_with_cache, stage_results_uri
from datasets_registry import Registry
from sandbox.verdict import VERDICT_TYPE, TestResult, Verdict

WRITES = {"verdict": pa.string(), "verdict_details": VERDICT_TYPE}


def test_stage_results_on_s3(s3_root: str) -> None:
    uri = stage_results_uri(cache_uri(Registry(s3_root)))
    assert uri == f"{s3_root}/_cache/stage_results.lance"
    computed: list[str] = []

    def process_rows(rows: list[dict]) -> list[dict]:
        computed.extend(row["program"] for row in rows)
        verdict = Verdict("passed", tests=(TestResult("t", True),), backend="docker", wall_s=0.25)
        return [{"verdict": verdict.status, "verdict_details": verdict.to_row()} for _ in rows]

    def run(rows: list[dict]) -> list:
        cache = StageResultCache(uri, {"stage": "execute"}, WRITES)  # a fresh client each time
        return process_with_cache(StageCacheUser(), cache, rows, process_rows, lambda row: row["program"])

    first = run([{"program": "a"}, {"program": "b"}])
    assert run([{"program": "b"}, {"program": "c"}, {"program": "a"}]) == [first[1], first[0], first[0]]
    assert computed == ["a", "b", "c"]  # only c ran the second time
