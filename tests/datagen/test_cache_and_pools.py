"""The LLM-call cache (one row per key under concurrent writers, indexed and compacted; a killed
job re-run pays only for unfinished rows; --no-cache) and teacher pools (routing by language,
every completion names its model)."""

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import lance
import psutil
import yaml
from execute_jobs import table_rows
from timing import bound
from tiny_models import build_tiny_causal_lm

from datagen.cache import KEY_INDEX, CompletionCache
from datagen.job import cache_uri, prepare_job, run_job
from datagen.spec import load_spec
from datasets_registry import Registry
from model_store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "datagen" / "seeds" / "ifeval_multilingual.jsonl"


def completions(text: str) -> list[dict]:
    return [dict(text=text, model="m", temperature=0.7, finish_reason="stop", prompt_tokens=1,
                 completion_tokens=1, cached=False, latency_s=0.1)]  # fmt: skip


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_cache_keeps_one_row_per_key_and_the_first_completions(tmp_path: Path) -> None:
    cache = CompletionCache(str(tmp_path / "calls.lance"))
    assert cache.get([digest("a")]) == {}  # no table yet
    cache.put({digest("a"): completions("first"), digest("b"): completions("b")})
    cache.put({digest("a"): completions("second"), digest("c"): completions("c")})
    got = cache.get([digest("a"), digest("b"), digest("c"), digest("missing"), digest("a")])
    texts = {key: value[0]["text"] for key, value in got.items()}
    assert texts == {digest("a"): "first", digest("b"): "b", digest("c"): "c"}
    assert lance.dataset(str(tmp_path / "calls.lance")).count_rows() == 3


def test_cache_indexes_compacts_and_drops_old_versions(tmp_path: Path) -> None:
    uri = str(tmp_path / "calls.lance")
    cache = CompletionCache(
        uri, index_lag_rows=40, index_lag_fragments=100, compact_fragments=6, keep_versions=timedelta(0)
    )
    keys = [digest(str(i)) for i in range(200)]
    for start in range(0, 200, 10):  # 20 puts of 10 rows: one fragment and one version each
        cache.put({key: completions(key[:6]) for key in keys[start : start + 10]})
    dataset = lance.dataset(uri)
    assert dataset.count_rows() == 200
    assert len(dataset.get_fragments()) < 6  # compacted
    assert len(dataset.versions()) < 10  # old versions removed after the compactions
    assert dataset.stats.index_stats(KEY_INDEX)["num_unindexed_rows"] < 40  # refreshed
    wanted = "key IN ('" + "', '".join(keys[:5]) + "')"
    assert "ScalarIndexQuery" in dataset.scanner(filter=wanted).explain_plan()  # lookups use it
    got = cache.get(keys)
    assert len(got) == 200 and all(got[key][0]["text"] == key[:6] for key in keys)


def _write_overlapping(uri: str, worker: int, start: "multiprocessing.synchronize.Event") -> None:
    cache = CompletionCache(uri, index_lag_rows=64, index_lag_fragments=4, compact_fragments=8)
    start.wait()
    for batch in range(25):
        shared = {digest(f"{batch}-{i}"): completions(f"worker {worker}") for i in range(16)}
        own = {digest(f"{worker}-{batch}-{i}"): completions(f"worker {worker}") for i in range(16)}
        cache.put(shared | own)
        assert len(cache.get(list(shared | own))) == 32


def test_concurrent_writers_never_duplicate_a_key(tmp_path: Path) -> None:
    # Four processes (as Ray actors are) put batches of which half the keys are the same in all
    # of them, at the same moments, while indexing and compaction go on.
    uri = str(tmp_path / "calls.lance")
    context = multiprocessing.get_context("spawn")  # Lance is not fork-safe
    start = context.Event()
    workers = [context.Process(target=_write_overlapping, args=(uri, w, start)) for w in range(4)]
    for process in workers:
        process.start()
    time.sleep(2)  # let them import before the race starts
    start.set()
    for process in workers:
        process.join(timeout=300)
    assert [process.exitcode for process in workers] == [0, 0, 0, 0]
    keys = lance.dataset(uri).to_table(columns=["key"])["key"].to_pylist()
    assert len(keys) == len(set(keys)) == 25 * 16 + 4 * 25 * 16


def write_spec(tmp_path: Path, generate: dict, rows: int, outputs: list[dict] | None = None) -> Path:
    lines = SEEDS.read_text().splitlines()[:rows]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines))
    (tmp_path / "t.j2").write_text("{{ prompt }}")
    spec = {
        "name": "cached",
        "source": {"path": "rows.jsonl"},
        "stages": [
            {"type": "render", "template": "t.j2"},
            {"type": "generate", "name": "generate", **generate},
        ],
        "outputs": outputs or [{"dataset": "cached-out", "kind": "generic"}],
        "ray": {"num_cpus": 2},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cached_rows(registry_root: Path) -> int:
    return table_rows(cache_uri(Registry(registry_root)))


def test_a_killed_job_rerun_generates_only_unfinished_rows(
    tmp_path: Path, tiny_model: Path, ray_local: None
) -> None:
    rows = 30
    generate = {
        "engine": {"model": str(tiny_model), "batch_size": 1, "torch_threads": 1},
        "sampling": {"n": 2, "temperature": [0.7, 1.2], "max_tokens": 48},
    }
    spec = write_spec(tmp_path, generate, rows)
    reg = tmp_path / "registry"
    env = {**os.environ, "ASSAY_REGISTRY": str(reg)}
    job = subprocess.Popen(
        [str(Path(sys.executable).parent / "assay"), "run", str(spec)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + bound(180)  # Ray's start is most of it on a loaded machine
    while cached_rows(reg) < 5:
        assert job.poll() is None, job.stderr.read().decode() if job.stderr else ""
        assert time.time() < deadline, "the job never cached a row"
        time.sleep(0.05)
    descendants = psutil.Process(job.pid).children(recursive=True)
    os.killpg(job.pid, signal.SIGKILL)
    for process in descendants:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    job.wait(timeout=30)
    done = cached_rows(reg)
    assert 5 <= done < rows, "the job was not killed half-way"
    assert Registry(reg).names() == []  # it died before registering anything

    registry = Registry(reg)
    report = run_job(prepare_job(load_spec(spec), registry, ModelStore(tmp_path / "m")), registry, log=print)
    (usage,) = report.usage["generate"].values()
    assert usage["cache_hits"] == 2 * done  # every finished row came from the cache ...
    assert usage["completions"] == 2 * (rows - done)  # ... and only the others were generated
    assert registry.open("cached-out").num_rows == rows

    again = run_job(
        prepare_job(load_spec(spec), registry, ModelStore(tmp_path / "m"), use_cache=False),
        registry,
        log=print,
    )
    (usage,) = again.usage["generate"].values()
    assert (usage["cache_hits"], usage["completions"]) == (0, 2 * rows)


def test_teacher_pool_routes_rows_and_records_models(
    tmp_path: Path, tiny_model: Path, ray_local: None
) -> None:
    other = build_tiny_causal_lm(tmp_path / "other-model", seed=1)
    generate = {
        "teachers": [
            {
                "name": "english",
                "engine": {"model": str(tiny_model), "torch_threads": 1},
                "route": {"column": "language", "values": ["en"]},
            },
            {
                "name": "romance",
                "engine": {"model": str(other), "torch_threads": 1, "num_cpus": 1},
                "route": {"column": "language", "values": ["fr", "es"]},
            },
            {"name": "everyone", "engine": {"model": str(tiny_model), "torch_threads": 1, "num_cpus": 1}},
        ],  # fmt: skip
        "sampling": {"n": 1, "temperature": 0.8, "max_tokens": 4},
    }
    spec = write_spec(tmp_path, generate, rows=50)
    registry = Registry(tmp_path / "registry")
    report = run_job(prepare_job(load_spec(spec), registry, ModelStore(tmp_path / "m")), registry, log=print)
    rows = registry.open("cached-out").to_arrow(columns=["language", "completions"]).to_pylist()
    for row in rows:
        models = [c["model"] for c in row["completions"]]
        expected = {"en": [str(tiny_model)], "fr": [str(other)], "es": [str(other)]}.get(row["language"], [])
        assert models == expected + [str(tiny_model)], row["language"]
    assert set(report.usage["generate"]) == {f"{tiny_model}", f"{other}"}
    lineage = registry.open("cached-out").info.lineage
    assert len(lineage.models) == 2 and json.dumps(lineage.metrics["usage"])  # two distinct models


def test_pipeline_with_an_openai_teacher(tmp_path: Path, ray_local: None, monkeypatch) -> None:  # noqa: ANN001
    import pytest
    from openai_server import FakeOpenAIServer

    from assay.errors import AssayError

    monkeypatch.setenv("ASSAY_TEST_KEY", "sk-secret-123")
    with FakeOpenAIServer(latency_s=0.01, api_key="sk-secret-123", models=["served-model"],
                          fail_markers={"POISON": 500}) as server:  # fmt: skip
        engine = {"backend": "openai", "model": "served-model", "base_url": server.base_url,
                  "api_key_env": "ASSAY_TEST_KEY", "max_retries": 1, "num_cpus": 0.5}  # fmt: skip
        spec = write_spec(
            tmp_path, {"engine": engine, "sampling": {"n": 2, "temperature": [0.1, 0.9]}}, rows=6
        )
        rows = (tmp_path / "rows.jsonl").read_text().splitlines()
        poisoned = json.loads(rows[0]) | {"id": "poisoned", "prompt": "POISON please"}
        (tmp_path / "rows.jsonl").write_text("\n".join([*rows, json.dumps(poisoned)]))
        registry = Registry(tmp_path / "registry")
        report = run_job(
            prepare_job(load_spec(spec), registry, ModelStore(tmp_path / "m")), registry, log=print
        )
        assert report.rows_failed == 1
        (dead,) = registry.open("cached-dead-letter").to_arrow().to_pylist()
        assert dead["id"] == "poisoned" and "500" in dead["error"]
        out = registry.open("cached-out")
        completions = [
            c for row in out.to_arrow(columns=["completions"])["completions"].to_pylist() for c in row
        ]
        assert len(completions) == 12 and {c["model"] for c in completions} == {"served-model"}
        usage = report.usage["generate"]["served-model"]
        assert usage["completions"] == 12 and usage["completion_tokens"] > 0
        assert "sk-secret-123" not in json.dumps(out.info.lineage.model_dump(mode="json"))

        monkeypatch.setenv("ASSAY_TEST_KEY", "wrong-key")
        with pytest.raises(AssayError, match="401|API key"):
            prepare_job(load_spec(spec), registry, ModelStore(tmp_path / "m"))
        bad_model = load_spec(spec, ["stages.1.engine.model=not-served"])
        monkeypatch.setenv("ASSAY_TEST_KEY", "sk-secret-123")
        with pytest.raises(AssayError, match="served-model"):
            prepare_job(bad_model, registry, ModelStore(tmp_path / "m"))


def test_bfloat16_weights_have_their_own_cache_identity(tiny_model: Path, tmp_path: Path) -> None:
    """bfloat16 weights sample other completions than float32 ones from the same seed, so
    their calls must never share a cache key (float32 keeps the identity it always had)."""
    from datagen.cache import call_key
    from datagen.engines.config import HFEngineConfig, SamplingConfig, VLLMEngineConfig
    from datagen.stages.generate import Teacher

    model = ModelStore(tmp_path / "models").resolve(str(tiny_model))
    engines = {
        "hf": HFEngineConfig(model=str(tiny_model)),
        "hf-bf16": HFEngineConfig(model=str(tiny_model), dtype="bfloat16"),
        "vllm": VLLMEngineConfig(backend="vllm", model=str(tiny_model)),
        "vllm-bf16": VLLMEngineConfig(backend="vllm", model=str(tiny_model), dtype="bfloat16"),
    }
    identities = {name: Teacher(name, engine, model, None).identity for name, engine in engines.items()}
    assert identities == {
        "hf": model.identity,
        "hf-bf16": f"{model.identity}:bfloat16",
        "vllm": f"vllm:{model.identity}",
        "vllm-bf16": f"vllm:{model.identity}:bfloat16",
    }
    conversation = [{"role": "user", "content": "hi"}]
    keys = {call_key(identity, conversation, SamplingConfig()) for identity in identities.values()}
    assert len(keys) == 4
